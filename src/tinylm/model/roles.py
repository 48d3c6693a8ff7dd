"""Which parameter plays which role: the contract between a model and its optimisers.

Training treats parameters differently by what they do, not by their shape alone:

* **embeddings** are lookup tables (token, learned position): a row is read, never
  multiplied by a dense input. Muon leaves them to AdamW, and weight decay spares
  them by default (a rare token's row would fade away between its appearances).
  A tied output head *is* the token table and is listed here, once.
* the **head** is an untied output projection to one logit per token: a matrix,
  but one the Muon authors found trains better with AdamW.
* **matrices** are the hidden weight matrices that mix features (attention and
  feed-forward projections): Muon's domain, and what weight decay regularises.
* **vectors** are gains and biases: never decayed, always on AdamW.

A model states this once, in a method (``GPT.param_roles()``), instead of
training code guessing from attribute names or class names. Any ``nn.Module``
that returns a ``ParamRoles`` from ``param_roles()`` can be trained by
``tinylm.train.optim``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class ParamRoles:
    """Every trainable parameter of a model exactly once, under its role."""

    embeddings: list[nn.Parameter] = field(default_factory=list)
    head: list[nn.Parameter] = field(default_factory=list)
    matrices: list[nn.Parameter] = field(default_factory=list)
    vectors: list[nn.Parameter] = field(default_factory=list)

    def all(self) -> list[nn.Parameter]:
        return [*self.embeddings, *self.head, *self.matrices, *self.vectors]


def split_by_shape(
    params: list[nn.Parameter], embeddings: list[nn.Parameter], head: list[nn.Parameter]
) -> ParamRoles:
    """``ParamRoles`` given the embedding tables and head: the rest split into 2-D and 1-D.

    Each tensor lands once: a tied head (the same tensor as a table) counts as an
    embedding, and a tensor listed twice in ``params`` is kept once.
    """
    seen: set[int] = set()
    roles = ParamRoles()
    table_ids = {id(p) for p in embeddings}
    head_ids = {id(p) for p in head} - table_ids
    for p in params:
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        if id(p) in table_ids:
            roles.embeddings.append(p)
        elif id(p) in head_ids:
            roles.head.append(p)
        elif p.dim() >= 2:
            roles.matrices.append(p)
        else:
            roles.vectors.append(p)
    return roles
