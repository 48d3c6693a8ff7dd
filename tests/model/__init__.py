"""Tests of tinylm.model: a package, so its conftest does not shadow tests/conftest.py."""
