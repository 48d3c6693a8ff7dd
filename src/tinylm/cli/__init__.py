"""The ``tinylm`` command: a thin layer of argument parsing over the library API."""
