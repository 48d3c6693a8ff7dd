"""Tests of tinylm.model (a package, so this folder's conftest does not shadow tests/conftest.py)."""
