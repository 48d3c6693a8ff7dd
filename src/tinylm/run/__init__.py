"""The run layer: start, resume and fine-tune training runs with the CLI's rules.

``tinylm train`` is a thin shell over these; a notebook, a script or ``tinylm
compare`` calls them directly and gets the same settings layering, run-folder
rules, cached data and errors:

* :mod:`~tinylm.run.settings`: preset → TOML file → overrides;
* :mod:`~tinylm.run.folder`: where a run goes, and when it may be reused, resumed
  or extended;
* :mod:`~tinylm.run.data_cache`: raw text prepared once per tokenizer and cached;
* :mod:`~tinylm.run.start`: :func:`start_run`, :func:`resume_run`, :func:`init_from`.

The names are exported lazily: the CLI imports ``tinylm.run.settings`` when it
starts, and that must not import torch (``tinylm tokenize`` never needs it).
"""

from __future__ import annotations

from tinylm.lazy import lazy_exports

_EXPORTS = {
    "start_run": "tinylm.run.start",
    "resume_run": "tinylm.run.start",
    "init_from": "tinylm.run.start",
    "layer_settings": "tinylm.run.settings",
    "RunSettings": "tinylm.run.settings",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
