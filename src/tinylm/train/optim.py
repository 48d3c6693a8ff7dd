"""Optimisers written out: AdamW and Muon, and the rule for who gets weight decay.

Both classes subclass ``torch.optim.Optimizer``, so they work anywhere torch takes
an optimiser (LR schedulers, ``state_dict()`` / ``load_state_dict()``, gradient
scalers); only ``step()`` is ours, and it is written to be read.

AdamW (Loshchilov & Hutter, 2019), for one parameter ``p`` with gradient ``g`` at
step ``t = 1, 2, ...``::

    p  <- p - lr * wd * p                      (decoupled weight decay)
    m  <- beta1 * m + (1 - beta1) * g          (first moment: running mean of g)
    v  <- beta2 * v + (1 - beta2) * g^2        (second moment: running mean of g^2)
    m_hat = m / (1 - beta1^t)                  (bias correction)
    v_hat = v / (1 - beta2^t)
    p  <- p - lr * m_hat / (sqrt(v_hat) + eps)

Muon (Keller Jordan, 2024) for the hidden weight matrices: momentum, then replace
the update ``G = U S V^T`` by (approximately) ``U V^T`` with a Newton-Schulz
iteration, so the step has the same size in every direction. Embeddings, the
output head, gains and biases stay on AdamW, in the same optimiser.

Who gets weight decay (``param_groups``): weight decay pulls weights towards 0,
which regularises matrices that *mix* features. It is wrong for

* gains (norm weights, 1-D, initialised to 1): decaying them shrinks the
  normalised activations towards 0, fighting the very thing the norm does;
* biases (1-D): offsets, not interactions, and few enough not to overfit;
* embeddings (by default): a row only gets gradient when its token appears, but
  decay shrinks every row every step, so rare tokens fade away.

So: every parameter with fewer than 2 dimensions, and every embedding table unless
``decay_embeddings=True``, is not decayed; every other matrix is. Which tensor is an
embedding table, the output head, a hidden matrix or a vector, the model says itself
in ``param_roles()`` (``tinylm.model.roles``); a model without that method is read
by a plain rule (``nn.Embedding`` tables are embeddings, no head), enough for weight
decay but not for Muon, which must know the head. A tied output head is the same
tensor as the token embedding and follows the embedding rule, in exactly one group.

Speed: each step updates all the tensors of a param group at once with torch's
``_foreach_*`` operations (one call per operation for the whole group, instead of a
Python loop over parameters), and Muon orthogonalises same-shaped matrices together
as one batch. The element-wise arithmetic is the same as ``torch.optim.AdamW``'s, in
the same order, so the weights are bit for bit the same as torch's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from tinylm.check_values import is_int, is_number
from tinylm.errors import TinylmError
from tinylm.model.roles import ParamRoles, split_by_shape

OPTIMIZERS = ("adamw", "muon")

# Coefficients of the quintic Newton-Schulz iteration from Keller Jordan's Muon.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


# -- the step both optimisers share ------------------------------------------------------


class _GroupwiseOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose ``step()`` updates a param group's tensors together.

    ``step()`` is written once, here: it skips parameters without a gradient and
    rejects sparse ones. A subclass says in ``_update(params, group)`` how the
    tensors ``params`` (those of ``group`` that have a gradient) move.
    """

    def _update(self, params: list[Tensor], group: dict[str, Any]) -> None:
        raise NotImplementedError

    def _check_group(self, group: dict[str, Any]) -> None:
        """Refuse hyperparameters this optimiser cannot step with (``TinylmError``)."""
        raise NotImplementedError

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group`` (which fills in the defaults), then ``_check_group``."""
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])

    def _state_keys(self, group: dict[str, Any]) -> tuple[str, ...]:
        """The per-parameter state an update of ``group`` keeps (``ADAM_STATE``, ``MUON_STATE``)."""
        raise NotImplementedError

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, then every group and state checked as at creation.

        torch copies whatever the saved state holds; a damaged checkpoint would then
        fail (or step wrongly) deep inside the first update. Here each group's
        hyperparameters pass the checks the constructor applies, and each
        parameter's state holds exactly the tensors its update reads, shaped like
        the parameter. A ``TinylmError`` names what is wrong.
        """
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            self._check_group(group)
            for param in group["params"]:
                if param in self.state:
                    _check_param_state(self.state[param], param, self._state_keys(group))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # unused in this forward pass: leave it and its state alone
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                _check_dense(p.grad)
            if params:
                self._update(params, group)
        return loss


# -- AdamW ------------------------------------------------------------------------------


def adamw_update(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    fused: bool = False,
) -> None:
    """One AdamW step for the tensors ``params``, in place; each ``states[i]`` holds m, v, t.

    Every operation acts on the whole list at once (``torch._foreach_*``); the
    operations, and their order, are the ones ``torch.optim.AdamW`` performs, so the
    two agree bit for bit. The comments say why each one is there.

    ``fused``: the same update by torch's fused kernel (see ``fused_adamw_update``),
    where the tensors allow it; equal to ``torch.optim.AdamW(fused=True)`` bit for bit.
    """
    beta1, beta2 = betas
    for p, state in zip(params, states, strict=True):
        if not state:
            # The moments start at zero: no gradient has been seen yet.
            state["step"] = 0
            state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
    m = [state["m"] for state in states]
    v = [state["v"] for state in states]
    if fused and _fusable(params):
        steps = [state["step"] for state in states]
        fused_adamw_update(params, grads, m, v, steps, lr, betas, eps, weight_decay)
        return

    # Decoupled weight decay: shrink the weights directly, instead of adding wd * p to
    # the gradient (plain L2). Added to the gradient, the decay would be divided by
    # sqrt(v) below, so weights with large gradients would hardly be decayed at all.
    # Scaling by lr makes the decay follow the learning-rate schedule.
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)

    # First moment m: a running mean of the gradient (momentum). lerp(g, 1 - beta1)
    # is m + (1 - beta1) * (g - m) = beta1 * m + (1 - beta1) * g.
    torch._foreach_lerp_(m, grads, 1 - beta1)
    # Second moment v: a running mean of the squared gradient, a per-weight estimate
    # of the gradient's scale. Dividing by its root gives every weight a step of about
    # lr, whatever the size of its gradients.
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)

    # Bias correction: m and v start at zero, so early on they are pulled towards 0;
    # after t steps the weights of the running mean sum to 1 - beta^t, not 1.
    # Dividing by that undoes the pull (at t = 1, m_hat = g exactly).
    steps = [state["step"] for state in states]
    step_sizes = [-lr / (1 - beta1**t) for t in steps]
    bias_correction2_sqrt = [math.sqrt(1 - beta2**t) for t in steps]
    # p -= lr * m_hat / (sqrt(v_hat) + eps), with the corrections folded in as torch
    # does: eps is added to sqrt(v_hat), so it keeps the same meaning at every step.
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, bias_correction2_sqrt)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, m, denom, step_sizes)


#: Devices whose fused AdamW kernel torch provides (for floating-point tensors).
FUSED_DEVICES = ("cpu", "cuda")


def fused_adamw_update(
    params: list[Tensor],
    grads: list[Tensor],
    m: list[Tensor],
    v: list[Tensor],
    steps: list[int],
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
) -> None:
    """The update of ``adamw_update``, by the kernel ``torch.optim.AdamW(fused=True)`` runs.

    The written-out form passes over every element once per operation: nine reads
    and writes of each weight-sized tensor per step. The fused kernel does the whole
    update for one element before moving to the next, reading ``p``, ``g``, ``m``
    and ``v`` once and writing ``p``, ``m``, ``v`` once, so a step that is bound by
    memory, as an optimiser step is, takes about a third of the time (nanoGPT's
    baby model on one CPU thread: 1.2-1.4 ms against 4.0-5.5 ms; within a whole
    training step that is about 1%). The arithmetic is the same formula; only where its
    intermediate results are rounded differs, so the two paths agree to float
    rounding, not bit for bit. ``steps`` are the step counts after this step.
    """
    beta1, beta2 = betas
    # The kernel reads each step count from a tensor; torch keeps them as float32.
    step_tensors = [
        torch.tensor(float(t), device=p.device) for t, p in zip(steps, params, strict=True)
    ]
    torch._fused_adamw_(
        params,
        grads,
        m,
        v,
        [],  # the maxima of v that AMSGrad keeps: not used
        step_tensors,
        amsgrad=False,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        weight_decay=weight_decay,
        eps=eps,
        maximize=False,
        grad_scale=None,
        found_inf=None,
    )


def _fusable(params: list[Tensor]) -> bool:
    """One device with a fused kernel, one floating-point dtype: what the kernel takes."""
    first = params[0]
    return (
        first.device.type in FUSED_DEVICES
        and first.is_floating_point()
        and all(p.device == first.device and p.dtype == first.dtype for p in params)
    )


def _adamw_update_group(
    params: list[Tensor], states: list[dict], group: dict[str, Any], fused: bool
) -> None:
    """``adamw_update`` with the hyperparameters of the param group ``group``."""
    grads = [p.grad for p in params]
    adamw_update(
        params,
        grads,
        states,
        group["lr"],
        group["betas"],
        group["eps"],
        group["weight_decay"],
        fused,
    )


class AdamW(_GroupwiseOptimizer):
    """Adam with decoupled weight decay, written out; ``weight_decay=0`` is plain Adam.

    Per-parameter state: ``step`` (an int), ``m`` (first moment) and ``v`` (second
    moment). It lives in ``self.state[p]``, so ``state_dict()`` saves it and
    ``load_state_dict()`` restores it: a resumed run continues bit for bit.

    ``fused``: update with torch's fused kernel (``fused_adamw_update``) instead of
    the written-out operations; the trainer sets it when the model's ``kernels`` is
    ``fused``. The state is the same either way.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        fused: bool = False,
    ) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        self.fused = fused
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        _check_adam_group(group)

    def _state_keys(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ADAM_STATE

    def _update(self, params: list[Tensor], group: dict[str, Any]) -> None:
        _adamw_update_group(params, [self.state[p] for p in params], group, self.fused)


# -- Muon -------------------------------------------------------------------------------


def newton_schulz(G: Tensor, steps: int = 5, dtype: torch.dtype | None = None) -> Tensor:
    """Approximately orthogonalise the matrix ``G``: ``U S V^T`` -> ``U S' V^T``, ``S' ~ 1``.

    The exact answer ``U V^T`` needs an SVD, slow on a GPU. Instead apply an odd
    polynomial ``f(x) = a x + b x^3 + c x^5`` to the singular values, using only
    matrix products: ``(X X^T) X = U S^3 V^T``, so
    ``a X + (b A + c A A) X`` with ``A = X X^T`` is ``U f(S) V^T``. Repeating it
    drives every singular value in (0, 1] towards 1.

    The coefficients (3.4445, -4.7750, 2.0315) make the slope at 0 large (3.4), so
    small singular values grow fast, at the price of not converging exactly: after
    five steps the singular values sit in roughly [0.7, 1.2], which works as well as
    exact orthogonalisation in practice.

    ``G`` may also be a stack ``(n, rows, cols)`` of same-shaped matrices: each is
    orthogonalised on its own, in one batched product per step (fewer, larger calls).

    ``dtype``: the precision of the iteration; ``None`` picks bfloat16 on CUDA
    (fast, and the iteration tolerates it) and float32 elsewhere.
    """
    if G.dim() not in (2, 3):
        raise TinylmError(f"newton_schulz needs a matrix, got shape {tuple(G.shape)}")
    if dtype is None:
        dtype = torch.bfloat16 if G.is_cuda else torch.float32
    a, b, c = NS_COEFFICIENTS
    X = G.to(dtype)
    # Work on the wide orientation so that A = X X^T is the smaller Gram matrix.
    tall = X.shape[-2] > X.shape[-1]
    if tall:
        X = X.mT
    # Scale so the largest singular value is at most 1 (the Frobenius norm bounds it):
    # the polynomial only converges on (0, 1]. The 1e-7 guards a zero update.
    X = X / (torch.linalg.matrix_norm(X, keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    if tall:
        X = X.mT
    return X.to(G.dtype)


def muon_update(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    lr: float,
    momentum: float,
    nesterov: bool,
    ns_steps: int,
    weight_decay: float,
) -> None:
    """One Muon step for the weight matrices ``params``, in place; ``states`` hold momentum."""
    for p, state in zip(params, states, strict=True):
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    bufs = [state["momentum_buffer"] for state in states]

    # Momentum: a running mean of the gradient, which smooths minibatch noise.
    torch._foreach_lerp_(bufs, grads, 1 - momentum)
    # Nesterov: step along where the momentum is heading, the mix of the fresh
    # gradient and the running mean, rather than the running mean alone.
    updates = torch._foreach_lerp(grads, bufs, momentum) if nesterov else bufs

    # Orthogonalise: the update matrix of a layer is dominated by a few directions;
    # setting all its singular values to ~1 gives the rare directions a full-size step.
    updates = _orthogonalise_by_shape(updates, ns_steps)

    # An orthogonal (rows x cols) matrix has entries of size ~1/sqrt(max(rows, cols)).
    # Scaling tall matrices by sqrt(rows / cols) gives every weight matrix an update
    # of about the same per-entry size, whatever its shape.
    scales = [-lr * max(1.0, p.shape[0] / p.shape[1]) ** 0.5 for p in params]

    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)  # decoupled, as in AdamW
    torch._foreach_mul_(updates, scales)
    torch._foreach_add_(params, updates)


def _orthogonalise_by_shape(updates: list[Tensor], ns_steps: int) -> list[Tensor]:
    """``newton_schulz`` of each matrix, same-shaped matrices stacked into one batch."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, u in enumerate(updates):
        by_shape.setdefault(tuple(u.shape), []).append(i)
    result: list[Tensor] = list(updates)
    for indices in by_shape.values():
        stacked = torch.stack([updates[i] for i in indices])
        for i, orthogonal in zip(indices, newton_schulz(stacked, ns_steps).unbind(0), strict=True):
            result[i] = orthogonal
    return result


class Muon(_GroupwiseOptimizer):
    """Muon for hidden weight matrices and AdamW for the rest, in one optimiser.

    Each param group carries ``use_muon``. ``use_muon=True`` groups (the default)
    must hold only 2-D tensors and use ``lr``, ``momentum``, ``nesterov``,
    ``ns_steps`` and ``weight_decay``; ``use_muon=False`` groups are updated exactly
    as ``AdamW`` does, with ``betas``, ``eps`` and ``weight_decay``, and get
    ``adamw_lr`` when they do not set their own ``lr`` (the Muon rate, ~0.02, would
    be far too large for Adam). ``build_optimizer(model, "muon")`` splits a model's
    parameters this way.

    State: ``momentum_buffer`` for Muon parameters; ``step``, ``m``, ``v`` for AdamW
    ones. It round-trips through ``state_dict()`` / ``load_state_dict()``.
    ``fused``: the AdamW groups use torch's fused kernel, as in ``AdamW``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        adamw_lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        fused: bool = False,
    ) -> None:
        self.adamw_lr = adamw_lr
        self.fused = fused
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_steps": ns_steps,
            "weight_decay": weight_decay,
            "betas": tuple(betas),
            "eps": eps,
            "use_muon": True,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not param_group.get("use_muon", True):
            param_group.setdefault("lr", self.adamw_lr)
        super().add_param_group(param_group)  # checks the group too

    def _check_group(self, group: dict[str, Any]) -> None:
        if not isinstance(group.get("use_muon"), bool):
            raise TinylmError(f"use_muon must be true or false, got {group.get('use_muon')!r}")
        if group["use_muon"]:
            _check_muon_group(group)
        else:
            _check_adam_group(group)

    def _state_keys(self, group: dict[str, Any]) -> tuple[str, ...]:
        return MUON_STATE if group["use_muon"] else ADAM_STATE

    def _update(self, params: list[Tensor], group: dict[str, Any]) -> None:
        states = [self.state[p] for p in params]
        if not group["use_muon"]:
            _adamw_update_group(params, states, group, self.fused)
            return
        muon_update(
            params,
            [p.grad for p in params],
            states,
            group["lr"],
            group["momentum"],
            group["nesterov"],
            group["ns_steps"],
            group["weight_decay"],
        )


# -- which parameter is what -----------------------------------------------------------


def roles_of(model: nn.Module) -> ParamRoles:
    """What ``model.param_roles()`` says; for a model without it, a plain rule.

    The plain rule: tables of ``nn.Embedding`` modules are embeddings, there is no
    head, other tensors are matrices (2-D and up) or vectors. Good enough for weight
    decay (a head is decayed like any matrix); Muon needs the model's own answer.
    """
    declared = getattr(model, "param_roles", None)
    if callable(declared):
        roles = declared()
        if not isinstance(roles, ParamRoles):
            raise TinylmError(
                f"{type(model).__name__}.param_roles() must return a ParamRoles, "
                f"got {type(roles).__name__}"
            )
        return roles
    tables = [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]
    return split_by_shape(list(model.parameters()), tables, [])


def _trainable(params: list[Tensor]) -> list[Tensor]:
    return [p for p in params if p.requires_grad]


def _split_decay(roles: ParamRoles, decay_embeddings: bool) -> tuple[list[Tensor], list[Tensor]]:
    """``(decayed, not decayed)`` by the rule in the module docstring."""
    decay = [*roles.head, *roles.matrices]
    no_decay = list(roles.vectors)
    (decay if decay_embeddings else no_decay).extend(roles.embeddings)
    return _trainable(decay), _trainable(no_decay)


def param_groups(
    model: nn.Module, weight_decay: float, decay_embeddings: bool = False
) -> list[dict[str, Any]]:
    """Two param groups, ``decay`` (``weight_decay``) and ``no_decay`` (0), for any optimiser.

    Rule (see the module docstring for why): vectors (gains, biases) and embedding
    tables (unless ``decay_embeddings``) are not decayed; matrices and the head are.
    Each tensor appears in exactly one group, a tied embedding/head once. Empty groups
    are left out. Each group has a ``name`` key for reading; torch optimisers ignore it.
    """
    decay, no_decay = _split_decay(roles_of(model), decay_embeddings)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def hidden_matrices(model: nn.Module) -> list[Tensor]:
    """The 2-D parameters Muon should own: the model's hidden matrices.

    Embeddings are lookups (a row is read, never multiplied by a dense input) and
    the head produces logits; the Muon authors found both train better with AdamW.
    Only a model that declares its roles (``param_roles()``) can say which matrix is
    the head, so Muon refuses a model that does not.
    """
    if not callable(getattr(model, "param_roles", None)):
        raise TinylmError(
            f"Muon needs to know which matrix is the output head, and "
            f"{type(model).__name__} has no param_roles() method; add one "
            "(see tinylm.model.roles) or use optimizer adamw"
        )
    return _trainable([p for p in roles_of(model).matrices if p.dim() == 2])


# -- the one entry point -----------------------------------------------------------------


def build_optimizer(
    model: nn.Module,
    name: str = "adamw",
    lr: float = 6e-4,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    decay_embeddings: bool = False,
    muon_lr: float = 0.02,
    muon_momentum: float = 0.95,
    muon_weight_decay: float = 0.0,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """The optimiser ``name`` (one of ``OPTIMIZERS``) over ``model``'s trainable parameters.

    ``fused``: AdamW updates by torch's fused kernel (see ``fused_adamw_update``).

    ``adamw``: ``AdamW`` over ``param_groups(model, weight_decay, decay_embeddings)``.
    ``muon``: ``Muon`` with the hidden matrices (``hidden_matrices``) at ``muon_lr`` /
    ``muon_momentum`` / ``muon_weight_decay`` (0 by default, as published), and
    everything else on AdamW at ``lr`` with the same decay rule as ``adamw``.

    Every group records its peak rate as ``base_lr``; ``scale_lr`` uses it to apply
    a schedule to groups with different rates.
    """
    if name not in OPTIMIZERS:
        raise TinylmError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if name == "adamw":
        groups = param_groups(model, weight_decay, decay_embeddings)
        for group in groups:
            group["base_lr"] = lr
        return AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused)

    hidden = hidden_matrices(model)
    roles = roles_of(model)
    hidden_ids = {id(p) for p in hidden}
    rest = ParamRoles(
        embeddings=roles.embeddings,
        head=roles.head,
        matrices=[p for p in roles.matrices if id(p) not in hidden_ids],
        vectors=roles.vectors,
    )
    decay, no_decay = _split_decay(rest, decay_embeddings)
    groups = [
        {"name": "muon", "params": hidden, "use_muon": True, "lr": muon_lr,
         "momentum": muon_momentum, "weight_decay": muon_weight_decay},
        {"name": "adamw_decay", "params": decay, "use_muon": False, "lr": lr,
         "weight_decay": weight_decay},
        {"name": "adamw_no_decay", "params": no_decay, "use_muon": False, "lr": lr,
         "weight_decay": 0.0},
    ]  # fmt: skip
    groups = [g for g in groups if g["params"]]
    for group in groups:
        group["base_lr"] = group["lr"]
    return Muon(
        groups,
        lr=muon_lr,
        momentum=muon_momentum,
        adamw_lr=lr,
        betas=betas,
        eps=eps,
        fused=fused,
    )


def scale_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Set each group's ``lr`` to ``factor`` times its peak rate ``base_lr``.

    A schedule gives one number per step, but Muon's groups run at different rates.
    With ``factor = lr_at(step, ...) / max_lr`` every group follows the schedule's
    shape at its own scale. A group without ``base_lr`` records its current ``lr``
    as the peak the first time.
    """
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("base_lr", group["lr"]) * factor


# -- argument checks --------------------------------------------------------------------


#: The per-parameter state each kind of update keeps.
ADAM_STATE = ("step", "m", "v")
MUON_STATE = ("momentum_buffer",)


def _number(group: dict[str, Any], key: str, what: str) -> float:
    """``group[key]``, a finite number (not a bool), or a ``TinylmError`` naming it."""
    value = group.get(key)
    if not is_number(value):
        raise TinylmError(f"{what} must be a finite number, got {value!r}")
    return value


def _check_adam_group(group: dict[str, Any]) -> None:
    betas = group.get("betas")
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(map(is_number, betas))):
        raise TinylmError(f"betas must be two numbers in [0, 1), got {betas!r}; try (0.9, 0.95)")
    beta1, beta2 = betas
    if _number(group, "lr", "learning rate") < 0:
        raise TinylmError(f"learning rate must be 0 or more, got {group['lr']}")
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise TinylmError(f"betas must lie in [0, 1), got {group['betas']}; try (0.9, 0.95)")
    if _number(group, "eps", "eps") < 0:
        raise TinylmError(f"eps must be 0 or more, got {group['eps']}; try 1e-8")
    if _number(group, "weight_decay", "weight_decay") < 0:
        raise TinylmError(f"weight_decay must be 0 or more, got {group['weight_decay']}")


def _check_muon_group(group: dict[str, Any]) -> None:
    if _number(group, "lr", "learning rate") < 0:
        raise TinylmError(f"learning rate must be 0 or more, got {group['lr']}")
    if not 0.0 <= _number(group, "momentum", "momentum") < 1.0:
        raise TinylmError(f"momentum must lie in [0, 1), got {group['momentum']}; try 0.95")
    ns_steps = _number(group, "ns_steps", "ns_steps")
    if int(ns_steps) != ns_steps or ns_steps < 1:
        raise TinylmError(f"ns_steps must be a positive integer, got {group['ns_steps']}")
    if not isinstance(group.get("nesterov"), bool):
        raise TinylmError(f"nesterov must be true or false, got {group.get('nesterov')!r}")
    if _number(group, "weight_decay", "weight_decay") < 0:
        raise TinylmError(f"weight_decay must be 0 or more, got {group['weight_decay']}")
    for p in group["params"]:
        if p.dim() != 2:
            raise TinylmError(
                f"Muon updates only 2-D weight matrices, got a tensor of shape "
                f"{tuple(p.shape)}; put it in a param group with use_muon=False"
            )


def _check_param_state(state: dict[str, Any], param: Tensor, keys: tuple[str, ...]) -> None:
    """A restored state holds exactly ``keys``: ``step`` a count, the rest shaped as ``param``.

    An empty state is a parameter that has not been stepped yet (its update starts it).
    """
    if not isinstance(state, dict):
        raise TinylmError(f"a parameter's state is {type(state).__name__}, not an object")
    if not state:
        return
    if set(state) != set(keys):
        raise TinylmError(
            f"a parameter's state holds {sorted(state)}, but this optimiser keeps {list(keys)}"
        )
    for key in keys:
        value = state[key]
        if key == "step":
            if not is_int(value) or value < 0:
                raise TinylmError(f"a parameter's step must be an integer >= 0, got {value!r}")
        elif not isinstance(value, Tensor) or value.shape != param.shape:
            found = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise TinylmError(
                f"a parameter's {key} is {found}, not a tensor of the parameter's shape "
                f"{tuple(param.shape)}"
            )


def _check_dense(grad: Tensor) -> None:
    if grad.is_sparse:
        raise TinylmError("sparse gradients are not supported; use nn.Embedding(sparse=False)")
