"""The inspector: a local web page that shows what a trained model does with a prompt.

``tinylm serve RUN...`` loads each run once and answers a small JSON API
(:mod:`tinylm.serve.api`) over the standard library's HTTP server
(:mod:`tinylm.serve.server`); the page in ``static/`` is hand-written HTML, CSS
and JavaScript with no build step, and fetches nothing from the internet. Every
number the page shows is computed by the library (``tinylm.inspect``, the model,
the training metrics); this package only validates requests and carries answers.
"""
