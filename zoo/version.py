"""The package version, in a module of its own so that parts of ``zoo`` can read it without importing the package
(``zoo/__init__`` imports them). Kept equal to ``pyproject.toml``'s version (``tests/zoo/test_public_api.py``)."""

__version__ = "0.1.0"
