"""The run layer: start, resume and fine-tune training runs with the CLI's rules.

``tinylm train`` is a thin shell over these; a notebook, a script or ``tinylm
compare`` calls them directly and gets the same settings layering, run-folder
rules, cached data and errors:

* :mod:`~tinylm.run.settings`: preset → TOML file → overrides;
* :mod:`~tinylm.run.folder`: where a run goes, and when it may be reused, resumed
  or extended;
* :mod:`~tinylm.run.data_cache`: raw text prepared once per tokenizer and cached;
* :mod:`~tinylm.run.start`: :func:`start_run`, :func:`resume_run`, :func:`init_from`.

The package itself imports nothing, so the CLI can read ``tinylm.run.settings``'s
defaults without importing torch; import names from the module that defines
them, or from the top-level package (``from tinylm import start_run``).
"""
