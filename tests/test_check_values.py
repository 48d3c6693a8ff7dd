"""The value checks, fed hostile values: a clean True/False or a one-line TinylmError, nothing else.

``is_number`` used to call ``float(value)`` unguarded, so ``check_number("lr", 10**400)``
raised ``OverflowError`` (issue 23's ``--set lr=1000...0``), and an int of more than
4,300 digits could not even be quoted in a message (``repr`` raises ``ValueError``).
"""

from __future__ import annotations

import math
import sys
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.check_values import (
    SHOWN_CHARS,
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_seed,
    check_vocab_size,
    is_int,
    is_number,
    shown,
)
from tinylm.errors import TinylmError


class RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class RaisingFloat(float):
    """A float subclass whose conversions and repr all raise."""

    def __float__(self) -> float:
        raise RuntimeError("no float")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class RaisingInt(int):
    def __float__(self) -> float:
        raise RuntimeError("no float")


HOSTILE = [
    10**400,
    -(10**400),
    10**5000,  # repr() of this raises ValueError
    True,
    False,
    math.nan,
    math.inf,
    -math.inf,
    "1e-3",
    "",
    "x" * 10_000,
    b"3",
    Decimal("0.1"),
    Decimal("NaN"),
    Fraction(1, 3),
    1 + 2j,
    None,
    [],
    [0.1],
    {},
    object(),
    RaisingRepr(),
    RaisingFloat(0.5),
    RaisingInt(3),
]

CHECKS = [
    lambda v: check_int("n", v, 1),
    lambda v: check_int("n", v, 0, allow_none=True, high=100),
    lambda v: check_vocab_size("vocab_size", v),
    lambda v: check_seed("seed", v),
    lambda v: check_number("lr", v, 0.0, strict=True),
    lambda v: check_number("x", v, -1.0),
    lambda v: check_fraction("dropout", v, "; try 0.1"),
    lambda v: check_choice("norm", v, ("rmsnorm", "layernorm")),
    lambda v: check_bool("bias", v),
]


def _only_one_line_errors(check, value) -> None:
    try:
        check(value)
    except TinylmError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 300, message
    # any other exception fails the test


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: type(v).__name__)
def test_predicates_answer_true_or_false_for_hostile_values(value):
    assert is_number(value) in (True, False)
    assert is_number(value, finite=False) in (True, False)
    assert is_int(value) in (True, False)
    assert isinstance(shown(value), str) and len(shown(value)) <= SHOWN_CHARS + 30


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("check", range(len(CHECKS)))
def test_each_check_returns_or_raises_one_line_for_hostile_values(check, value):
    _only_one_line_errors(CHECKS[check], value)


def test_which_values_are_numbers():
    assert is_number(3) and is_number(-2.5) and is_number(1e308) and is_number(2**1000)
    for value in (10**400, True, math.nan, math.inf, "3", Decimal(1), Fraction(1, 2), None):
        assert not is_number(value), value
    assert is_number(math.inf, finite=False) and is_number(math.nan, finite=False)
    assert not is_number(10**400, finite=False)  # no float holds it, infinite or not


def test_a_number_too_large_for_a_float_is_refused_in_one_line():
    """The old ``is_number`` raised OverflowError here."""
    with pytest.raises(TinylmError, match=r"^lr must be a positive number, got an integer of"):
        check_number("lr", 10**400, 0.0, strict=True)
    with pytest.raises(TinylmError, match=r"^dropout must be in \[0, 1\), got an integer of"):
        check_fraction("dropout", 10**400)


def test_an_integer_too_long_to_print_is_named_by_its_size():
    with pytest.raises(TinylmError, match=r"^block_size of about 5,001 digits is larger than any"):
        check_int("block_size", 10**5000, 1, high=1 << 20)
    assert shown(10**400) == "an integer of about 401 digits"
    assert shown(12345) == "12345"


def test_a_long_value_is_cut_in_the_middle():
    text = shown("a" * 1000 + "z")
    assert text.startswith("'aaa") and text.endswith("az' (1,003 characters)")
    assert len(text) <= SHOWN_CHARS + 30


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    st.one_of(
        st.integers(),
        st.integers(min_value=10**300, max_value=10**400),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.decimals(allow_nan=True, allow_infinity=True),
        st.fractions(),
        st.complex_numbers(),
        st.text(),
        st.binary(),
        st.none(),
        st.lists(st.integers(), max_size=3),
    ),
    st.sampled_from(range(len(CHECKS))),
)
def test_any_value_gives_true_false_or_one_line(value, check):
    assert is_number(value) is _reference_is_number(value)
    _only_one_line_errors(CHECKS[check], value)


def _reference_is_number(value) -> bool:
    """What a number is, said another way: a real int or float within a float's range."""
    if type(value) is int:
        return abs(value) <= sys.float_info.max  # (the half-ulp band above it is never drawn)
    if type(value) is float:
        return not (value != value or value in (math.inf, -math.inf))
    return False
