"""Looking inside: how text becomes tokens, and what a trained model does with them.

One module per view, each returning plain data (numpy arrays, dataclasses), with
separate table (``format_*``) and picture (``plot_*``) functions, so a notebook or
a web page makes the same calls as ``tinylm inspect``:

- ``tokens``     -- token boundaries, ids and counts (no torch; ``tinylm tokenize``).
- ``loaded``     -- ``LoadedModel``: a run loaded once, then viewed many times.
- ``next_token`` -- the top-k next-token probabilities, at T = 1 and at a temperature.
- ``attention``  -- attention weights per layer and head, heatmaps, raw ``.npy``.
- ``embeddings`` -- nearest neighbours, analogies, a 2-D PCA map of the embeddings.
- ``lens``       -- the logit lens: the top guess read out after every layer.
- ``figures``, ``tables`` -- what the pictures and tables share (PNG output, labels).

The package itself imports nothing, so ``tinylm.inspect.tokens`` never pays for
torch; import names from the module that defines them::

    from tinylm.inspect.loaded import LoadedModel
    from tinylm.inspect.next_token import next_token_distribution, plot_next_token
"""
