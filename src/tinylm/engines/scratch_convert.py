"""Between the scratch engine's lists of floats and the PyTorch engine's tensors.

``tinylm.scratch`` uses the standard library only, so it cannot read or write a
checkpoint; this module can. The scalar model names its weights as
``GPT.state_dict()`` does and stores each matrix as a list of rows in the same
layout, and its Adam keeps ``m``, ``v`` and ``t`` as ``AdamW`` keeps ``m``, ``v``
and ``step``. So a conversion is a ``tolist()`` one way and a ``torch.tensor``
the other, and a scratch run's checkpoint is an ordinary tinylm checkpoint that
``tinylm sample``, ``tinylm eval`` and the PyTorch engine's fine-tuning (``init_from``) read.

The tensors are float64, the scalar engine's precision, so resuming a scratch
run continues it exactly; loading them into a float32 ``GPT`` just rounds them.
"""

from __future__ import annotations

import torch

from tinylm.errors import TinylmError
from tinylm.model import GPT, ModelConfig
from tinylm.model.config import PRESETS
from tinylm.scratch.model import Config, MicroGPT
from tinylm.scratch.train import Adam
from tinylm.train.optim import AdamW

#: The choices that make a ``GPT`` the microgpt network the scratch engine computes.
#: The sizes (vocab_size, block_size, n_layer, n_embd, n_head) and init_std,
#: norm_eps are free.
MICROGPT_STRUCTURE = {
    key: value
    for key, value in PRESETS["microgpt"].items()
    if key not in ("vocab_size", "block_size", "n_layer", "n_embd", "n_head")
} | {"norm_placement": "pre", "dropout": 0.0, "n_kv_head": None, "d_ff": None}


def check_scratch_config(config: ModelConfig) -> None:
    """Raise unless ``config`` describes a network the scratch engine implements."""
    for key, value in MICROGPT_STRUCTURE.items():
        have = getattr(config, key)
        if key == "n_kv_head" and have in (None, config.n_head):
            continue  # as many KV heads as heads is plain multi-head attention
        if key == "d_ff" and have in (None, 4 * config.n_embd):
            continue
        if have != value:
            raise TinylmError(
                f"the scratch engine implements the microgpt network only: {key} must be "
                f"{value!r}, not {have!r}; use the microgpt preset, changing only its sizes "
                "(vocab_size, block_size, n_layer, n_embd, n_head), init_std or norm_eps"
            )


def scratch_config(config: ModelConfig) -> Config:
    """The scratch ``Config`` of a microgpt-shaped ``ModelConfig``."""
    check_scratch_config(config)
    return Config(
        vocab_size=config.vocab_size,
        block_size=config.block_size,
        n_layer=config.n_layer,
        n_embd=config.n_embd,
        n_head=config.n_head,
        norm_eps=config.norm_eps,
        init_std=config.init_std,
    )


def scratch_from_gpt(gpt: GPT) -> MicroGPT:
    """A scalar model with ``gpt``'s weights (as float64)."""
    weights = {name: t.detach().double().tolist() for name, t in gpt.state_dict().items()}
    return MicroGPT(scratch_config(gpt.config), weights=weights)


def gpt_from_scratch(model: MicroGPT, config: ModelConfig) -> GPT:
    """A float64 ``GPT`` holding the scalar model's weights."""
    gpt = GPT(config).double()
    state = {
        name: torch.tensor(rows, dtype=torch.float64) for name, rows in model.weights().items()
    }
    gpt.load_state_dict(state, strict=True)
    return gpt


def _slices(model: MicroGPT) -> dict[str, tuple[int, int, tuple[int, int]]]:
    """Where each matrix sits in ``model.parameters()``: (start, end, shape)."""
    out, start = {}, 0
    for name, matrix in model.params.items():
        shape = (len(matrix), len(matrix[0]))
        out[name] = (start, start + shape[0] * shape[1], shape)
        start += shape[0] * shape[1]
    return out


def adamw_from_adam(adam: Adam, model: MicroGPT, gpt: GPT, lr: float) -> AdamW:
    """An ``AdamW`` over ``gpt``'s parameters holding the scalar Adam's state."""
    optimizer = AdamW(
        gpt.parameters(), lr=lr, betas=adam.betas, eps=adam.eps, weight_decay=adam.weight_decay
    )
    if adam.t == 0:
        return optimizer
    slices = _slices(model)
    for name, param in gpt.named_parameters():
        start, end, shape = slices[name]
        optimizer.state[param] = {
            "step": adam.t,
            "m": torch.tensor(adam.m[start:end], dtype=torch.float64).view(shape),
            "v": torch.tensor(adam.v[start:end], dtype=torch.float64).view(shape),
        }
    return optimizer


def adam_from_adamw(optimizer: AdamW, model: MicroGPT, gpt: GPT) -> Adam:
    """A scalar Adam over ``model.parameters()`` holding ``optimizer``'s state for ``gpt``."""
    group = optimizer.param_groups[0]
    adam = Adam(
        model.parameters(),
        betas=tuple(group["betas"]),
        eps=group["eps"],
        weight_decay=group["weight_decay"],
    )
    slices = _slices(model)
    for name, param in gpt.named_parameters():
        state = optimizer.state.get(param)
        if not state:
            continue
        start, end, _ = slices[name]
        adam.t = int(state["step"])
        adam.m[start:end] = state["m"].double().flatten().tolist()
        adam.v[start:end] = state["v"].double().flatten().tolist()
    return adam
