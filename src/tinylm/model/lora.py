"""LoRA (Hu et al., 2021): fine-tune a frozen model through small low-rank corrections.

A linear layer computes ``y = x W^T + b`` with ``W`` of shape ``(out, in)``. LoRA
keeps ``W`` frozen and learns a correction of rank ``r``::

    W' = W + (alpha / r) * B A        A: (r, in),  B: (out, r),  r << min(in, out)

so the layer computes ``x W^T + b + (alpha / r) * (dropout(x) A^T) B^T``. Only
``A`` and ``B`` train: ``r * (in + out)`` numbers instead of ``in * out``.

* **Why B starts at zero.** ``A`` starts random (as an ``nn.Linear`` weight
  would) and ``B`` at zero, so ``B A = 0``: the adapted model starts *exactly*
  equal to the base, and training moves it away from there. (Both at zero would
  give both zero gradient; ``B`` at zero alone still lets ``B`` learn at once.)
* **alpha / r.** The correction is scaled by ``alpha / r``, so changing the rank
  does not change how big a step of the same learning rate is: with ``alpha``
  fixed, a larger ``r`` sums more terms, each scaled down.
* **Dropout** applies to the adapter's input ``x`` only, never to the frozen path:
  it regularises the correction and leaves the base computation as it was.
  In eval mode it does nothing.
* **Merging.** ``W + (alpha / r) B A`` is an ordinary matrix: :func:`merge_lora`
  folds it into the base weight and removes the wrappers, so the merged model is a
  plain ``GPT`` with no extra cost at inference.

Which layers get an adapter is ``LoraConfig.targets``: names of the projections
inside each block (``attn.w_q``, ``attn.w_k``, ``attn.w_v``, ``attn.w_o``; the
feed-forward's ``ffn.w1``/``ffn.w2``, or SwiGLU's ``ffn.w``/``ffn.v``/``ffn.w2``),
or ``attn`` / ``ffn`` for all of a sub-layer's projections. Grouped-query
attention needs nothing special: ``w_k`` and ``w_v`` are merely narrower.

**How a trainer uses it.** Build and load the base model, then::

    add_lora(model, LoraConfig(rank=8, alpha=16, targets=("attn", "ffn")))
    optimizer = torch.optim.AdamW(lora_parameters(model), lr=...)
    ...  # train as usual: only A and B have requires_grad
    save_adapter(folder, model, lora_config, base_checkpoint)  # at each checkpoint

(``tinylm.checkpoint.adapter.save_adapter``; the adapter's tensors are
:func:`lora_state_dict`). ``GPT.param_roles()`` lists only trainable parameters,
so the optimisers built from it see just the adapters. A wrapped model's own
``state_dict`` names the base weights ``....w_q.base.weight``: save the adapter,
not the wrapped model, or :func:`merge_lora` first.

This module is the model side only: files are ``tinylm.checkpoint.adapter``,
the PEFT export ``tinylm.interop.peft_export``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tinylm.check_values import check_fraction, check_int, check_number, shown
from tinylm.errors import TinylmError

#: Every projection an adapter can wrap, by its name inside a block.
ATTENTION_PROJECTIONS = ("attn.w_q", "attn.w_k", "attn.w_v", "attn.w_o")
FEEDFORWARD_PROJECTIONS = ("ffn.w1", "ffn.w2", "ffn.w", "ffn.v")
#: Names that stand for all of a sub-layer's projections (those the model has).
GROUPS = {"attn": ATTENTION_PROJECTIONS, "ffn": FEEDFORWARD_PROJECTIONS}
TARGETS = (*GROUPS, *ATTENTION_PROJECTIONS, *FEEDFORWARD_PROJECTIONS)
#: The most a rank may be: far above any use, it stops a damaged file's number.
MAX_RANK = 1 << 16


@dataclass(frozen=True)
class LoraConfig:
    """The adapter's settings, checked once when written down (frozen; use ``replace``).

    ``rank`` is ``r``; ``alpha`` sets the scale ``alpha / rank``; ``dropout``
    applies to each adapter's input; ``targets`` are projection names or groups
    (see :data:`TARGETS`).
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("attn", "ffn")

    def __post_init__(self) -> None:
        check_int("lora rank", self.rank, 1, high=MAX_RANK)
        check_number("lora alpha", self.alpha, strict=True)
        check_fraction("lora dropout", self.dropout)
        if isinstance(self.targets, list):  # from JSON: a list reads as the tuple it was
            object.__setattr__(self, "targets", tuple(self.targets))
        if not isinstance(self.targets, tuple) or not self.targets:
            raise TinylmError(
                f"lora targets must be a non-empty list of names, got {shown(self.targets)}; "
                f"choose from {', '.join(TARGETS)}"
            )
        for name in self.targets:
            if name not in TARGETS:
                raise TinylmError(
                    f"lora target {shown(name)} is not a projection; choose from "
                    f"{', '.join(TARGETS)}"
                )

    @property
    def scale(self) -> float:
        """``alpha / rank``: what ``B A`` is multiplied by."""
        return self.alpha / self.rank

    def projections(self) -> tuple[str, ...]:
        """The targets with groups spelt out, each once, in :data:`TARGETS` order."""
        wanted = set()
        for name in self.targets:
            wanted.update(GROUPS.get(name, (name,)))
        return tuple(n for n in (*ATTENTION_PROJECTIONS, *FEEDFORWARD_PROJECTIONS) if n in wanted)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, data: Any) -> LoraConfig:
        """From a dict (an adapter's JSON); an unknown or missing key is an error."""
        if not isinstance(data, dict):
            raise TinylmError(f"lora settings must be an object, got {shown(data)}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise TinylmError(f"unknown lora setting {key!r}; valid are {', '.join(names)}")
        missing = [name for name in names if name not in data]
        if missing:
            raise TinylmError(f"lora setting {missing[0]!r} is missing")
        return cls(**data)


class LoraLinear(nn.Module):
    """A frozen ``nn.Linear`` (``base``) plus its trainable low-rank correction ``B A``."""

    def __init__(self, base: nn.Linear, config: LoraConfig) -> None:
        super().__init__()
        self.base = base
        self.scale = config.scale
        weight = base.weight
        self.lora_a = nn.Parameter(torch.empty(config.rank, base.in_features, **_like(weight)))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, config.rank, **_like(weight)))
        # A as nn.Linear initialises a weight of its shape (and as PEFT does): B A = 0 anyway.
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(config.dropout)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta(self) -> Tensor:
        """``(alpha / r) B A``, the correction to the base weight, ``(out, in)``."""
        return (self.lora_b @ self.lora_a) * self.scale

    def forward(self, x: Tensor) -> Tensor:
        # Two thin products (x A^T, then B^T) instead of forming the (out, in) matrix B A.
        return self.base(x) + (self.dropout(x) @ self.lora_a.t()) @ self.lora_b.t() * self.scale


def _like(weight: Tensor) -> dict[str, Any]:
    return {"device": weight.device, "dtype": weight.dtype}


# -- adding, listing, merging -----------------------------------------------------------------


def add_lora(model: nn.Module, config: LoraConfig) -> nn.Module:
    """Wrap ``model``'s targeted projections in :class:`LoraLinear`, in place; freeze the rest.

    ``model`` is a ``GPT`` (anything with ``blocks`` whose ``attn``/``ffn`` hold the
    projections). Every parameter of the base, embeddings and norms included, gets
    ``requires_grad=False``; only the adapters' ``A`` and ``B`` train. Returns ``model``.
    """
    if not isinstance(config, LoraConfig):
        raise TinylmError(f"add_lora needs a LoraConfig, got {type(config).__name__}")
    if has_lora(model):
        raise TinylmError("this model already has LoRA adapters; merge_lora it first")
    blocks = _blocks(model)
    explicit = [n for n in config.targets if n not in GROUPS and _projection(blocks[0], n) is None]
    if explicit:
        raise TinylmError(
            f"lora target {explicit[0]!r} is not in this model (its feed-forward has "
            f"{', '.join(_present(model, FEEDFORWARD_PROJECTIONS))}); target one it has"
        )
    model.requires_grad_(False)
    for block in blocks:
        for name in config.projections():
            layer = _projection(block, name)
            if layer is None:  # a group's member this kind of layer lacks (w1 under SwiGLU)
                continue
            if not isinstance(layer, nn.Linear):
                raise TinylmError(f"{name} is a {type(layer).__name__}, not a linear layer")
            parent, attr = name.split(".")
            setattr(getattr(block, parent), attr, LoraLinear(layer, config))
    return model


def _blocks(model: nn.Module) -> list[nn.Module]:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise TinylmError(f"add_lora needs a tinylm GPT, got {type(model).__name__}")
    return list(blocks)


def _projection(block: nn.Module, name: str) -> nn.Module | None:
    parent, attr = name.split(".")
    return getattr(getattr(block, parent), attr, None)


def _present(model: nn.Module, names: tuple[str, ...]) -> list[str]:
    first = _blocks(model)[0]
    return [name for name in names if _projection(first, name) is not None]


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoraLinear]]:
    """``(module name, layer)`` of every adapter in ``model``, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, LoraLinear):
            yield name, module


def has_lora(model: nn.Module) -> bool:
    return any(True for _ in lora_layers(model))


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every adapter's ``A`` and ``B``: what the optimizer gets."""
    return [p for _, layer in lora_layers(model) for p in (layer.lora_a, layer.lora_b)]


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The adapter tensors by name (``blocks.0.attn.w_q.lora_a``, ...), detached."""
    state = {}
    for name, layer in lora_layers(model):
        state[f"{name}.lora_a"] = layer.lora_a.detach()
        state[f"{name}.lora_b"] = layer.lora_b.detach()
    return state


def load_lora_state_dict(model: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Copy adapter tensors into ``model``'s adapters; names and shapes must match exactly."""
    expected = lora_state_dict(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise TinylmError(
            f"the adapter does not fit this model ({detail}); add_lora with the adapter's "
            "own settings onto its own base"
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise TinylmError(
                f"the adapter does not fit this model ({name} is {list(tensor.shape)} there, "
                f"{list(expected[name].shape)} here); use the adapter's own base and settings"
            )
    with torch.no_grad():
        for name, tensor in tensors.items():
            expected[name].copy_(tensor)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold each adapter into its base weight (``W += (alpha/r) B A``) and unwrap it.

    Returns ``model``, a plain model again (same ``state_dict`` names as before
    :func:`add_lora`). Parameters stay frozen: ``model.requires_grad_(True)`` to
    train it in full.
    """
    for name, layer in list(lora_layers(model)):
        with torch.no_grad():
            layer.base.weight.copy_(merged_weight(layer))
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, layer.base)
    return model


def merged_weight(layer: LoraLinear) -> Tensor:
    """``W + (alpha/r) B A`` as a new tensor: the product in float64, one rounding at the end."""
    with torch.no_grad():
        weight = layer.base.weight
        delta = (layer.lora_b.double() @ layer.lora_a.double()) * layer.scale
        return (weight.double() + delta).to(weight.dtype)


def merged_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The ``state_dict`` ``model`` would have after :func:`merge_lora`, leaving it as it is.

    A trainer with adapters saves this: its checkpoints hold an ordinary model
    (plain names, merged weights) that everything reading checkpoints takes as is.
    The merged tensors equal :func:`merge_lora`'s bit for bit.
    """
    state = model.state_dict()
    for name, layer in lora_layers(model):
        del state[f"{name}.lora_a"], state[f"{name}.lora_b"]
        for key in layer.base.state_dict():
            state[f"{name}.{key}"] = state.pop(f"{name}.base.{key}")
        state[f"{name}.weight"] = merged_weight(layer)
    return state
