"""Leaving and entering tinylm: Hugging Face folders, GGUF files and tiktoken vocabularies.

Read in this order: ``hf_config`` (which configurations have an equivalent, and
the config.json both ways), ``hf_weights`` (tensor names and layouts, including
the RoPE row permutation), ``hf_tokenizer`` (writing tokenizer.json; reading it is
``tinylm.tokenizers.hf_tokenizer_json``'s),
``tiktoken_export``, ``gguf_export``, then ``export`` and ``hf_import``, which
put the pieces together into folders. Nothing here needs ``transformers``; GGUF
needs the ``gguf`` package (``pip install 'tinylm[interop]'``).
"""

from __future__ import annotations

from tinylm.interop.export import export_model
from tinylm.interop.hf_config import from_hf_config, hf_architecture, to_hf_config
from tinylm.interop.hf_import import import_hf, read_hf_checkpoint
from tinylm.interop.hf_tokenizer import to_hf_tokenizer_json
from tinylm.interop.hf_weights import from_hf_state_dict, to_hf_state_dict
from tinylm.interop.tiktoken_export import tiktoken_files
from tinylm.tokenizers.hf_tokenizer_json import from_hf_tokenizer_json

__all__ = [
    "export_model",
    "from_hf_config",
    "from_hf_state_dict",
    "from_hf_tokenizer_json",
    "hf_architecture",
    "import_hf",
    "read_hf_checkpoint",
    "tiktoken_files",
    "to_hf_config",
    "to_hf_state_dict",
    "to_hf_tokenizer_json",
]
