"""Exception types. Every error a user can cause derives from :class:`NeuroemuError`.

The command line prints these as one line (no traceback) and exits non-zero.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable


class NeuroemuError(Exception):
    """Base class for errors caused by user input (files, configs, arguments, data)."""


class CardError(NeuroemuError):
    """A device card is malformed. The message names the file, the field and what was expected."""


class ConfigError(NeuroemuError):
    """An experiment configuration is malformed (file, field, expected value)."""


class DataError(NeuroemuError):
    """A dataset could not be found, fetched or parsed."""


def did_you_mean(value: Any, options: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` for the option closest to a misspelled ``value``, or ``""``.

    Case, ``_``, ``-`` and spaces are ignored in the comparison, so ``tikitaka``, ``Tiki-Taka``
    and ``tiki taka`` all suggest ``tiki_taka``."""
    def norm(s: Any) -> str:
        return "".join(c for c in str(s).lower() if c not in "_- ")

    by_norm = {norm(o): str(o) for o in options}
    close = difflib.get_close_matches(norm(value), list(by_norm), n=1, cutoff=0.6)
    return f" (did you mean '{by_norm[close[0]]}'?)" if close and str(value) != by_norm[close[0]] else ""
