"""Growing a model's vocabulary: new rows for tokens its tokenizer gained (chat turns).

A base model meets the chat template's ``<|user|>``, ``<|assistant|>`` ... for the
first time when it is fine-tuned, so its token table and output head need one row
per new id. :func:`grow_vocab` appends them, leaving every existing row untouched,
so the grown model gives bit-for-bit the same logits for the old ids (the new
columns of the logits are extra, the old ones unchanged).

Initialisation: each new row is the **mean of the existing rows** of its matrix,
the token table's for the embedding, the head's for an untied head (a tied head
*is* the token table, so it grows with it). A new token therefore starts as an
"average token": its input vector sits at the centre of the known ones, instead
of a random direction the trained layers never saw, and its output row gives the
mean of the old logits at every position, so the new ids start neither favoured
nor impossible. Fine-tuning then moves them where they are needed (Hewitt, 2021,
"Initializing new word embeddings for pretrained language models").
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from tinylm.errors import TinylmError
from tinylm.model.gpt import GPT


def mean_rows(weight: Tensor, count: int) -> Tensor:
    """``count`` copies of the mean of ``weight``'s rows, accumulated in float64."""
    mean = weight.detach().to(torch.float64).mean(dim=0).to(weight.dtype)
    return mean.expand(count, -1).clone()


def _grown(weight: Tensor, count: int) -> nn.Parameter:
    rows = torch.cat([weight.detach(), mean_rows(weight, count)])
    return nn.Parameter(rows, requires_grad=weight.requires_grad)


def grow_vocab(model: GPT, vocab_size: int) -> GPT:
    """Grow ``model`` (in place, and returned) to ``vocab_size`` ids; new rows as above.

    Tied or untied, the head keeps its layout; ``model.config.vocab_size`` becomes
    ``vocab_size``. Growing to the present size changes nothing; shrinking is refused
    (it would delete tokens the tokenizer still uses).
    """
    old = model.config.vocab_size
    if vocab_size < old:
        raise TinylmError(
            f"cannot shrink the vocabulary from {old:,} to {vocab_size:,} ids; a model only "
            "grows to match a tokenizer that gained tokens"
        )
    if vocab_size == old:
        return model
    count = vocab_size - old
    model.tok_emb.weight = _grown(model.tok_emb.weight, count)
    if model.config.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight
    else:
        model.lm_head.weight = _grown(model.lm_head.weight, count)
    model.lm_head.out_features = vocab_size
    model.config = replace(model.config, vocab_size=vocab_size)
    return model
