"""``tinylm.scratch.value``: each primitive against finite differences, graphs against torch."""

from __future__ import annotations

import ast
import math
import random
import sys
from pathlib import Path

import pytest
import torch

from tinylm.scratch.value import Value, topological_order

SCRATCH = Path(__file__).resolve().parents[2] / "src" / "tinylm" / "scratch"

# Each primitive as a function of its Value inputs, with the points it is checked at.
PRIMITIVES = {
    "add": (lambda a, b: a + b, [(0.3, -1.7), (2.0, 5.0)]),
    "mul": (lambda a, b: a * b, [(0.3, -1.7), (-2.0, 5.0)]),
    "pow": (lambda a: a**3.0, [(0.7,), (-1.3,)]),
    "pow_negative": (lambda a: a**-0.5, [(0.7,), (2.5,)]),
    "exp": (lambda a: a.exp(), [(0.4,), (-2.0,)]),
    "log": (lambda a: a.log(), [(0.4,), (3.0,)]),
    "relu": (lambda a: a.relu(), [(0.4,), (-2.0,)]),
    "neg": (lambda a: -a, [(0.4,)]),
    "sub": (lambda a, b: a - b, [(0.3, -1.7)]),
    "div": (lambda a, b: a / b, [(0.3, -1.7)]),
    "radd": (lambda a: 2.5 + a, [(0.3,)]),
    "rmul": (lambda a: 2.5 * a, [(0.3,)]),
    "rsub": (lambda a: 2.5 - a, [(0.3,)]),
    "rdiv": (lambda a: 2.5 / a, [(0.3,)]),
    "sum": (lambda a, b: Value.sum([a, b, a]), [(0.3, -1.7)]),
    "dot": (lambda a, b: Value.dot([a, b, a], [b, 0.5, a]), [(0.3, -1.7)]),
}


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_primitive_backward_matches_central_differences(name):
    fn, points = PRIMITIVES[name]
    for point in points:
        inputs = [Value(x) for x in point]
        out = fn(*inputs)
        out.backward()
        h = 1e-6
        for i in range(len(point)):
            up = [x + h * (j == i) for j, x in enumerate(point)]
            down = [x - h * (j == i) for j, x in enumerate(point)]
            numeric = (fn(*map(Value, up)).data - fn(*map(Value, down)).data) / (2 * h)
            assert inputs[i].grad == pytest.approx(numeric, rel=1e-6, abs=1e-8), (name, point, i)


def _random_graph(rng: random.Random, leaves: list, ops: dict, n_nodes: int):
    """Build a random expression over ``leaves`` with ``ops``; return the summed output."""
    nodes = list(leaves)
    for _ in range(n_nodes):
        op = rng.choice(sorted(ops))
        a, b = rng.choice(nodes), rng.choice(nodes)
        nodes.append(ops[op](a, b, rng.uniform(0.5, 1.5)))
    return nodes[-8:]


def _ops(exp, log, relu):
    # Keep every value finite: log of a positive value, exp of a squashed one.
    return {
        "add": lambda a, b, c: a + b,
        "mul": lambda a, b, c: a * b * 0.5,
        "sub": lambda a, b, c: a - c,
        "div": lambda a, b, c: a / (b * b + c),
        "pow": lambda a, b, c: (a * a + c) ** -0.5,
        "exp": lambda a, b, c: exp(a * 0.1),
        "log": lambda a, b, c: log(a * a + c),
        "relu": lambda a, b, c: relu(a - b),
        "rconst": lambda a, b, c: c - a * c,
    }


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_match_torch_autograd(seed):
    rng = random.Random(seed)
    start = [rng.uniform(-1, 1) for _ in range(5)]
    ours = [Value(x) for x in start]
    out = Value.sum(
        _random_graph(random.Random(seed), ours, _ops(Value.exp, Value.log, Value.relu), 60)
    )
    out.backward()
    theirs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in start]
    ref = sum(
        _random_graph(random.Random(seed), theirs, _ops(torch.exp, torch.log, torch.relu), 60)
    )
    ref.backward()
    assert out.data == pytest.approx(ref.item(), rel=1e-12)
    for v, t in zip(ours, theirs, strict=True):
        expected = 0.0 if t.grad is None else t.grad.item()  # None: the leaf went unused
        assert v.grad == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_shared_subexpressions_accumulate():
    a = Value(3.0)
    b = a * a + a  # a used three times
    b.backward()
    assert a.grad == 7.0  # d(a^2 + a)/da = 2a + 1


def test_deep_graph_needs_no_recursion():
    x = Value(1.0)
    y = x
    for _ in range(sys.getrecursionlimit() * 5):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == 1.0
    assert len(topological_order(y)) == sys.getrecursionlimit() * 10


def test_topological_order_puts_children_first():
    x, y, b = Value(1.5), Value(2.0), Value(3.0)
    a = x * y
    c = a * b  # c depends on a, and both are children of d: a must still come first
    d = a + c
    order = topological_order(d)
    assert order.index(a) < order.index(c) < order.index(d)
    assert x not in order  # leaves pass nothing on, so they are left out
    d.backward()
    assert (x.grad, y.grad, b.grad) == (2.0 * 4.0, 1.5 * 4.0, 3.0)  # d = xy(1 + b)


def test_scratch_imports_only_the_standard_library():
    for path in SCRATCH.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = top in sys.stdlib_module_names or top == "__future__"
                ok = ok or name == "tinylm.scratch" or name.startswith("tinylm.scratch.")
                assert ok, f"{path.name} imports {name}"


def test_exponent_must_be_a_number():
    with pytest.raises(TypeError):
        Value(2.0) ** Value(3.0)
    assert math.isclose((Value(4.0) ** 0.5).data, 2.0)


def test_dot_is_the_sum_of_products_bit_for_bit():
    # Value.dot is a derived op: the same data and the same gradients as the
    # products added by Value.sum, and a length mismatch is an error, not a truncation.
    rng = random.Random(3)
    xs = [rng.uniform(-2, 2) for _ in range(7)]
    ys = [rng.uniform(-2, 2) for _ in range(7)]
    a, b = [Value(x) for x in xs], [Value(y) for y in ys]
    out = Value.dot(a, b)
    out.backward()
    total = 0.0
    for x, y in zip(xs, ys, strict=True):
        total += x * y
    assert out.data == total
    assert [v.grad for v in a] == ys and [v.grad for v in b] == xs
    with pytest.raises(ValueError):
        Value.dot(a, b[:-1])


def _recursive_order(root: Value) -> list[Value]:
    """The textbook's recursive depth-first sort, leaves left out (the reference)."""
    order: list[Value] = []
    visited: set[Value] = set()

    def visit(node: Value) -> None:
        if node not in visited:
            visited.add(node)
            for child in node.children:
                visit(child)
            if node.children:
                order.append(node)

    visit(root)
    return order


@pytest.mark.parametrize("seed", range(6))
def test_topological_order_is_the_recursive_textbook_order(seed):
    # Not just any valid order: the same one, so gradients meeting at a shared node are
    # added in the same sequence as a recursive engine adds them (bit-identical sums).
    rng = random.Random(seed)
    leaves = [Value(rng.uniform(-1, 1)) for _ in range(5)]
    outputs = _random_graph(rng, leaves, _ops(Value.exp, Value.log, Value.relu), 80)
    root = Value.sum(outputs + [outputs[0] * outputs[1]])
    assert topological_order(root) == _recursive_order(root)
