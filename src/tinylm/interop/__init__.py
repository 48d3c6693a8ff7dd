"""Leaving and entering tinylm: Hugging Face folders, GGUF files and tiktoken vocabularies.

Read in this order: ``hf_config`` (which configurations have an equivalent, and
the config.json both ways), ``hf_weights`` (tensor names and layouts, including
the RoPE row permutation), ``hf_tokenizer`` (tokenizer.json both ways),
``tiktoken_export``, ``gguf_export``, then ``export`` and ``hf_import``, which
put the pieces together into folders. Nothing here needs ``transformers``; GGUF
needs the ``gguf`` package (``pip install 'tinylm[interop]'``).
"""

from __future__ import annotations

from tinylm.lazy import lazy_exports

_EXPORTS = {
    "export_model": "tinylm.interop.export",
    "import_hf": "tinylm.interop.hf_import",
    "read_hf_checkpoint": "tinylm.interop.hf_import",
    "hf_architecture": "tinylm.interop.hf_config",
    "to_hf_config": "tinylm.interop.hf_config",
    "from_hf_config": "tinylm.interop.hf_config",
    "to_hf_state_dict": "tinylm.interop.hf_weights",
    "from_hf_state_dict": "tinylm.interop.hf_weights",
    "to_hf_tokenizer_json": "tinylm.interop.hf_tokenizer",
    "from_hf_tokenizer_json": "tinylm.interop.hf_tokenizer",
    "tiktoken_files": "tinylm.interop.tiktoken_export",
    "write_gguf": "tinylm.interop.gguf_export",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
