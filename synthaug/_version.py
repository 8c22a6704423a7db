"""The package version, in one place (pyproject reads it; no module imports the package root for it)."""
__version__ = "0.2.0"
