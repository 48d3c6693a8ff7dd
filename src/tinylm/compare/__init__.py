"""Ablations: train several configurations on the same data and budget, then compare.

A comparison is three steps, one module each:

* :mod:`~tinylm.compare.plan`: which configurations run — every combination of
  the varied values, or one axis at a time from a baseline — each with a seed;
* :mod:`~tinylm.compare.execute`: run them through the run layer
  (:func:`tinylm.run.start.start_run`), in this process, skipping finished runs and
  resuming a half-done one, so a killed comparison continues where it stopped;
* :mod:`~tinylm.compare.results`: the table (mean ± standard deviation over
  seeds, with differences inside the seed spread marked) and the loss curves.

The package itself imports nothing (so ``tinylm compare --help`` stays torch-free);
import names from the module that defines them.
"""
