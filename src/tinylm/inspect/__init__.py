"""Looking inside: how text becomes tokens, and what a trained model does with them.

One module per view, each returning plain data (numpy arrays, dataclasses) with
separate table and plot functions, so a notebook or a web page can use the same
calls as ``tinylm inspect``. Load a run once, then call views as often as needed::

    from tinylm.inspect import LoadedModel, next_token_distribution, plot_next_token
    loaded = LoadedModel.from_run("runs/small")
    dist = next_token_distribution(loaded, "The with statement", k=10, temperature=0.8)
    plot_next_token(dist)            # a matplotlib Figure; save_png(fig, path) writes it

Names are imported lazily: ``tinylm.inspect.tokens`` never imports torch.
"""

from __future__ import annotations

from tinylm.lazy import lazy_exports

_EXPORTS = {
    "LoadedModel": "tinylm.inspect.loaded",
    "NextTokenDistribution": "tinylm.inspect.next_token",
    "next_token_distribution": "tinylm.inspect.next_token",
    "softmax_with_temperature": "tinylm.inspect.next_token",
    "format_next_token_table": "tinylm.inspect.next_token",
    "plot_next_token": "tinylm.inspect.next_token",
    "AttentionMaps": "tinylm.inspect.attention",
    "attention_maps": "tinylm.inspect.attention",
    "save_attention_arrays": "tinylm.inspect.attention",
    "plot_attention": "tinylm.inspect.attention",
    "Neighbour": "tinylm.inspect.embeddings",
    "EmbeddingProjection": "tinylm.inspect.embeddings",
    "nearest_neighbours": "tinylm.inspect.embeddings",
    "analogy": "tinylm.inspect.embeddings",
    "project_embeddings": "tinylm.inspect.embeddings",
    "format_neighbours": "tinylm.inspect.embeddings",
    "plot_embeddings": "tinylm.inspect.embeddings",
    "LogitLens": "tinylm.inspect.lens",
    "logit_lens": "tinylm.inspect.lens",
    "format_lens_table": "tinylm.inspect.lens",
    "plot_logit_lens": "tinylm.inspect.lens",
    "save_png": "tinylm.inspect.figures",
    "png_bytes": "tinylm.inspect.figures",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
