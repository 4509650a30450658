"""Progress of a long run: a tqdm bar when tqdm is installed and stderr is a terminal, plain text
lines otherwise (logs and CI get one line per finished item).

``Progress(total, desc)`` counts finished items; ``step(message)`` advances by one and shows the
message with elapsed time and an estimate of the time left. ``enabled=False`` silences it.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str = "", *, enabled: bool = True):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.done = 0
        self.start = time.monotonic()
        self._bar = None
        if enabled and total > 0 and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)

    def log(self, message: str) -> None:
        """Print a line without breaking the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def step(self, message: str = "") -> None:
        """One more item finished."""
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        line = f"[{self.done}/{self.total}] {message} ({elapsed:.0f} s elapsed, ~{left:.0f} s left)"
        self.log(line)
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
