"""Progress display: tqdm when installed, a plain text line otherwise; silent when disabled."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True) -> Iterator[T]:
    """Iterate over ``items`` showing progress on stderr."""
    if not enabled:
        yield from items
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, total=total, desc=desc, leave=False, file=sys.stderr)
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    last = 0.0
    start = time.monotonic()
    i = 0
    for i, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if now - last > 1.0 or i == total:
            last = now
            of = f"/{total}" if total else ""
            sys.stderr.write(f"\r{desc} {i}{of} ({now - start:.0f} s)")
            sys.stderr.flush()
    if i:
        sys.stderr.write("\r" + " " * 60 + "\r")
        sys.stderr.flush()
