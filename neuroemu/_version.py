"""The package version (one place, imported by modules that record it without importing the package)."""

__version__ = "0.1.0"
