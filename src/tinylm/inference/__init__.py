"""Using a trained model: loading it from disk, generating text, measuring its loss.

Training imports these (it samples and evaluates as it goes); nothing here
imports training, so a script that only samples or evaluates needs none of it.

* :mod:`~tinylm.inference.loading`: :func:`load_model` from a run or checkpoint folder;
* :mod:`~tinylm.inference.sampling`: prompts and text streamed as tokens arrive;
* :mod:`~tinylm.inference.evaluation`: loss and perplexity on held-out tokens.
* :mod:`~tinylm.inference.benchmarks`: multiple-choice tasks scored by log-likelihood.
"""
