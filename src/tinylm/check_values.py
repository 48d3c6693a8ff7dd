"""Checking values: the one home of ``is_number`` and the ``check_*`` helpers.

``ModelConfig`` and ``TrainConfig`` validate their fields when they are made, and
the readers of untrusted files (:mod:`tinylm.untrusted_files`) check what they
read; all of them use these functions, so a number means the same thing
everywhere (finite, and small enough to be a float: ``inf``, ``nan`` and
``10**400`` are refused) and a mistake reads the same wherever it is made.

Whatever the value (a huge int, a bool, a ``Decimal``, an object whose ``repr``
raises), the predicates answer ``True`` or ``False`` and the checks either return
or raise a one-line :class:`~tinylm.errors.TinylmError`; nothing else comes out.
Standard library only: the model, training and the CLI may all import it.
"""

from __future__ import annotations

import math

from tinylm.errors import TinylmError


def is_int(value: object) -> bool:
    """An ``int`` that is not a ``bool`` (``n_layer=True`` is a mistake, not 1 layer)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object, *, finite: bool = True) -> bool:
    """An ``int`` or ``float`` (not a ``bool``) that a float holds; finite unless ``finite=False``.

    An int too large for a float (``10**400``) is no number here: every use turns
    it into a float sooner or later, and that would raise ``OverflowError``. Never
    raises, whatever ``value`` is.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        as_float = float(value)
    except Exception:  # OverflowError: too large; anything else: a subclass that misbehaves
        return False
    return not finite or math.isfinite(as_float)


#: The longest a value is quoted in a message; longer ones are cut in the middle.
SHOWN_CHARS = 60


def shown(value: object) -> str:
    """``repr(value)`` for a one-line message: at most :data:`SHOWN_CHARS` characters.

    A mistyped number can have thousands of digits (Python refuses to print an
    int of more than 4,300) and a hostile object a ``repr`` that raises; neither
    may turn a one-line error into a traceback or a screenful.
    """
    if isinstance(value, int) and value.bit_length() > 3 * SHOWN_CHARS:
        return f"an integer of about {_digits(value):,} digits"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__
        return f"a {type(value).__name__} that cannot be shown"
    if len(text) <= SHOWN_CHARS:
        return text
    half = (SHOWN_CHARS - 5) // 2
    return f"{text[:half]}...{text[-half:]} ({len(text):,} characters)"


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
            raise TinylmError(f"{name} must be a positive integer, got {shown(value)}")
        raise TinylmError(f"{name} must be an integer >= {low}, got {shown(value)}")
    if high is not None and value > high:
        raise TinylmError(
            f"{name} {_count(value)} is larger than any real model's; the most tinylm accepts is "
            f"{high:,} (is the config damaged or the number mistyped?)"
        )


#: The most ids a vocabulary may have: 64 times the largest in real use (~262K).
#: Anything bigger is a damaged file or a typo, and would fail later in an
#: allocation of embeddings or a token file that cannot hold its ids.
MAX_VOCAB_SIZE = 1 << 24


def _digits(value: int) -> int:
    """About how many decimal digits ``value`` has (counted without printing it)."""
    return int(abs(value).bit_length() * math.log10(2)) + 1


def _count(value: int) -> str:
    """An integer with thousands separators; its size in digits when too long for a line."""
    if value.bit_length() <= 3 * SHOWN_CHARS:
        return f"{value:,}"
    return f"of about {_digits(value):,} digits"


def check_vocab_size(name: str, value: int) -> None:
    """``value`` is a vocabulary size at most :data:`MAX_VOCAB_SIZE`."""
    check_int(name, value, 1)
    if value > MAX_VOCAB_SIZE:
        raise TinylmError(
            f"{name} {_count(value)} is larger than any real vocabulary; the most tinylm "
            f"accepts is {MAX_VOCAB_SIZE:,} (is a token id or the size mistyped?)"
        )


#: The largest seed a ``torch.Generator`` takes (it holds 64 bits).
MAX_SEED = 2**64 - 1


def check_seed(name: str, value: object, allow_none: bool = False) -> None:
    """``value`` is an integer seed in ``[0, 2**64 - 1]``, what a ``torch.Generator`` holds."""
    if allow_none and value is None:
        return
    if not is_int(value) or not 0 <= value <= MAX_SEED:
        raise TinylmError(f"{name} must be an integer from 0 to 2**64 - 1, got {shown(value)}")


def check_number(name: str, value: object, low: float = 0.0, strict: bool = False) -> None:
    """``value`` is a finite number ``>= low`` (``> low`` when ``strict``)."""
    if not is_number(value) or value < low or (strict and value == low):
        if strict and low == 0:
            raise TinylmError(f"{name} must be a positive number, got {shown(value)}")
        relation = ">" if strict else ">="
        raise TinylmError(f"{name} must be a number {relation} {low}, got {shown(value)}")


def check_fraction(name: str, value: object, hint: str = "") -> None:
    """``value`` is a finite number in ``[0, 1)`` (dropout, betas, momentum)."""
    if not is_number(value) or not 0.0 <= value < 1.0:
        raise TinylmError(f"{name} must be in [0, 1), got {shown(value)}{hint}")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """``value`` is one of the named ``choices``."""
    if not (isinstance(value, str) and value in choices):
        raise TinylmError(f"{name} {shown(value)} is not one of: {', '.join(choices)}")


def check_bool(name: str, value: object) -> None:
    """``value`` is ``True`` or ``False`` (not 0/1, not "yes")."""
    if not isinstance(value, bool):
        raise TinylmError(f"{name} must be true or false, got {shown(value)}")
