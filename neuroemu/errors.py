"""Exception types. Every error a user can cause derives from :class:`NeuroemuError`.

The command line prints these as one line (no traceback) and exits non-zero.
"""


class NeuroemuError(Exception):
    """Base class for errors caused by user input (files, configs, arguments, data)."""


class CardError(NeuroemuError):
    """A device card is malformed. The message names the file, the field and what was expected."""


class ConfigError(NeuroemuError):
    """An experiment configuration is malformed (file, field, expected value)."""


class DataError(NeuroemuError):
    """A dataset could not be found, fetched or parsed."""
