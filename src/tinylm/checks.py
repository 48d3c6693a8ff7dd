"""The value checks every config uses, written once.

``ModelConfig`` and ``TrainConfig`` validate their fields when they are made; both
use these functions, so a number means the same thing in both (finite: ``inf`` and
``nan`` are refused everywhere) and a mistake reads the same whichever config it is
in. Standard library only: the model, training and the CLI may all import it.
"""

from __future__ import annotations

import math

from tinylm.errors import TinylmError


def is_int(value: object) -> bool:
    """An ``int`` that is not a ``bool`` (``n_layer=True`` is a mistake, not 1 layer)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite ``int`` or ``float`` that is not a ``bool``."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def check_int(
    name: str, value: object, low: int, allow_none: bool = False, high: int | None = None
) -> None:
    """``value`` is an integer ``>= low`` and, if given, ``<= high`` (or ``None`` when allowed).

    ``high`` is for sizes read from files: far above any real model, it stops a
    damaged or hostile number before something is built or allocated from it.
    """
    if allow_none and value is None:
        return
    if not is_int(value) or value < low:
        if low == 1:
            raise TinylmError(f"{name} must be a positive integer, got {value!r}")
        raise TinylmError(f"{name} must be an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        raise TinylmError(
            f"{name} {value:,} is larger than any real model's; the most tinylm accepts is "
            f"{high:,} (is the config damaged or the number mistyped?)"
        )


#: The most ids a vocabulary may have: 64 times the largest in real use (~262K).
#: Anything bigger is a damaged file or a typo, and would fail later in an
#: allocation of embeddings or a token file that cannot hold its ids.
MAX_VOCAB_SIZE = 1 << 24


def check_vocab_size(name: str, value: int) -> None:
    """``value`` is a vocabulary size at most :data:`MAX_VOCAB_SIZE`."""
    check_int(name, value, 1)
    if value > MAX_VOCAB_SIZE:
        raise TinylmError(
            f"{name} {value:,} is larger than any real vocabulary; the most tinylm accepts is "
            f"{MAX_VOCAB_SIZE:,} (is a token id or the size mistyped?)"
        )


#: The largest seed a ``torch.Generator`` takes (it holds 64 bits).
MAX_SEED = 2**64 - 1


def check_seed(name: str, value: object, allow_none: bool = False) -> None:
    """``value`` is an integer seed in ``[0, 2**64 - 1]``, what a ``torch.Generator`` holds."""
    if allow_none and value is None:
        return
    if not is_int(value) or not 0 <= value <= MAX_SEED:
        raise TinylmError(f"{name} must be an integer from 0 to 2**64 - 1, got {value!r}")


def check_number(name: str, value: object, low: float = 0.0, strict: bool = False) -> None:
    """``value`` is a finite number ``>= low`` (``> low`` when ``strict``)."""
    if not is_number(value) or value < low or (strict and value == low):
        if strict and low == 0:
            raise TinylmError(f"{name} must be a positive number, got {value!r}")
        relation = ">" if strict else ">="
        raise TinylmError(f"{name} must be a number {relation} {low}, got {value!r}")


def check_fraction(name: str, value: object, hint: str = "") -> None:
    """``value`` is a finite number in ``[0, 1)`` (dropout, betas, momentum)."""
    if not is_number(value) or not 0.0 <= value < 1.0:
        raise TinylmError(f"{name} must be in [0, 1), got {value!r}{hint}")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """``value`` is one of the named ``choices``."""
    if value not in choices:
        raise TinylmError(f"{name} {value!r} is not one of: {', '.join(choices)}")


def check_bool(name: str, value: object) -> None:
    """``value`` is ``True`` or ``False`` (not 0/1, not "yes")."""
    if not isinstance(value, bool):
        raise TinylmError(f"{name} must be true or false, got {value!r}")
