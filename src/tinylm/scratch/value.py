"""A scalar that remembers how it was made, so it can tell every input its gradient.

This is reverse-mode automatic differentiation on single numbers, the whole idea
behind ``loss.backward()`` in PyTorch. Every arithmetic operation on a ``Value``
returns a new ``Value`` that records its inputs (``children``) and the derivative
of the output with respect to each input (``local_grads``), computed right away
while the input numbers are at hand (for adds and products, a marker saying how
to read them off later; see below). Six primitives are enough for a GPT:

    a + b      d/da = 1,             d/db = 1
    a * b      d/da = b,             d/db = a
    a ** k     d/da = k * a^(k-1)    (k a plain number)
    exp(a)     d/da = exp(a)
    log(a)     d/da = 1 / a
    relu(a)    d/da = 1 if a > 0 else 0

Everything else is derived from them: ``-a`` is ``a * -1``, ``a - b`` is
``a + (-b)``, ``a / b`` is ``a * b ** -1``.

``backward()`` then applies the chain rule from the output back to the inputs.
It first lists the graph's nodes in topological order (each node after all the
nodes it was computed from), then walks that list backwards: when a node is
reached, every use of it has already added its share to ``node.grad``, so the
node can pass ``local_grad * node.grad`` on to each child. The sort is written
with an explicit stack rather than recursion, so a deep graph (a long document
through many layers) never hits Python's recursion limit.

Two kinds of node need not store their local gradients, because they can be read
off for free when ``backward`` reaches them, and they are most of the graph:

* an add (``a + b``, ``Value.sum``) passes its gradient on unchanged, so its
  ``local_grads`` is the marker ``ONES``;
* a product of two ``Value``s, ``a * b``, sends ``b.data`` to ``a`` and
  ``a.data`` to ``b``: its ``local_grads`` is the marker ``PRODUCT``, and
  ``backward`` reads the two numbers from the children themselves (nothing
  changes ``data`` between a forward pass and its ``backward``).

That is the same chain rule with the same numbers (``1.0 * g`` is ``g``, to the
bit), but one tuple fewer for every such node to build, to free, and for the
cycle collector to look at: about a fifth of a training step when the collector
is off, and more when it is on.

Two choices keep the graph small without changing a single number it computes:

* A plain Python number taking part in an operation (``x * 0.5``, ``x + 1e-5``)
  is not wrapped in a ``Value``: it needs no gradient, so it is no node at all.
* ``Value.sum(values)`` adds many values in one ``add`` node with a local
  gradient of 1 for each, instead of a chain of ``len(values) - 1`` binary adds.
  It adds left to right, exactly as the chain would. ``Value.dot(a, b)``, the
  sum of products at the heart of every linear layer and attention score, is
  built on it.

And one outside it: a graph holds no reference cycles (a node only points at
the nodes it was computed from), so reference counting frees it the moment the
loss goes out of scope. Python's cycle collector would only walk the millions of
live nodes again and again looking for cycles; ``no_cycle_collector`` switches
it off while training.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final, Literal

# Markers for the local gradients of the two commonest nodes, which backward() works
# out from the node itself instead of reading a stored tuple (see the module's docstring).
ONES: Final = "ones"  # an add: d(a + b + ...) / d(each child) = 1
PRODUCT: Final = "product"  # a * b of two Values: d/da = b.data, d/db = a.data

LocalGrads = tuple[float, ...] | Literal["ones", "product"]


class Value:
    """A float in a computation graph: ``data``, its ``grad``, and how it was made."""

    __slots__ = ("data", "grad", "children", "local_grads")

    def __init__(
        self, data: float, children: tuple[Value, ...] = (), local_grads: LocalGrads = ()
    ) -> None:
        self.data = data
        self.grad = 0.0  # d(output of backward()) / d(self), filled in by backward()
        self.children = children
        # d(self) / d(child), one per child, or the marker ONES or PRODUCT
        self.local_grads = local_grads

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    # -- the six primitives ---------------------------------------------------------

    def __add__(self, other: Value | float) -> Value:
        if type(other) is Value:
            return Value(self.data + other.data, (self, other), ONES)
        return Value(self.data + other, (self,), ONES)

    def __mul__(self, other: Value | float) -> Value:
        if type(other) is Value:
            return Value(self.data * other.data, (self, other), PRODUCT)
        return Value(self.data * other, (self,), (other,))

    def __pow__(self, k: float) -> Value:
        if isinstance(k, Value):
            raise TypeError("only a plain number can be an exponent: a ** k with k a float")
        return Value(self.data**k, (self,), (k * self.data ** (k - 1),))

    def exp(self) -> Value:
        out = math.exp(self.data)
        return Value(out, (self,), (out,))

    def log(self) -> Value:
        return Value(math.log(self.data), (self,), (1.0 / self.data,))

    def relu(self) -> Value:
        positive = self.data > 0
        return Value(self.data if positive else 0.0, (self,), (1.0 if positive else 0.0,))

    @staticmethod
    def sum(values: Iterable[Value]) -> Value:
        """``values[0] + values[1] + ...`` as one add node (same result, fewer nodes)."""
        values = tuple(values)
        total = 0.0
        for v in values:  # left to right, like a chain of binary adds
            total += v.data
        return Value(total, values, ONES)

    @staticmethod
    def dot(a: Sequence[Value], b: Sequence[Value | float]) -> Value:
        """``a[0] * b[0] + a[1] * b[1] + ...``: one ``mul`` node per pair, one ``add`` node.

        A derived operation, no new kind of node: the sum of products that every
        linear layer and every attention score is made of, named once.
        """
        return Value.sum([x * y for x, y in zip(a, b, strict=True)])

    # -- derived operations -----------------------------------------------------------

    def __neg__(self) -> Value:
        return self * -1.0

    def __sub__(self, other: Value | float) -> Value:
        return self + (-other)

    def __rsub__(self, other: float) -> Value:
        return (-self) + other

    def __truediv__(self, other: Value | float) -> Value:
        if isinstance(other, Value):
            return self * other**-1
        return self * (1.0 / other)

    def __rtruediv__(self, other: float) -> Value:
        return self**-1 * other

    def __radd__(self, other: float) -> Value:
        return self + other

    def __rmul__(self, other: float) -> Value:
        return self * other

    # -- the chain rule -----------------------------------------------------------------

    def backward(self) -> None:
        """Fill in ``grad`` of every node this value was computed from (d self / d node).

        Gradients add up: call ``zero_grad`` on reused inputs (the parameters)
        between backward passes.
        """
        order = topological_order(self)
        self.grad = 1.0
        for node in reversed(order):
            grad = node.grad
            local_grads = node.local_grads
            if local_grads is ONES:  # an add passes its gradient on unchanged
                for child in node.children:
                    child.grad += grad
            elif local_grads is PRODUCT:  # a * b: d/da = b, d/db = a
                a, b = node.children
                a.grad += b.data * grad
                b.grad += a.data * grad
            else:
                # No ``strict=``: any keyword sends ``zip`` down CPython's slow calling
                # path (a keyword dict per call), and this runs once per node; the two
                # tuples are made together in the primitives, so their lengths agree.
                for child, local in zip(node.children, local_grads):  # noqa: B905
                    child.grad += local * grad


def topological_order(root: Value) -> list[Value]:
    """The nodes ``root`` was computed from, each after all of its children.

    Depth-first with an explicit stack: a node is pushed once to expand its
    children and emitted when it comes off the stack the second time, when all
    of its children have been emitted. Children are pushed last first, so they
    come off the stack first first: the order is exactly the one the recursive
    textbook version produces, and so is the order in which ``backward`` adds
    the gradients that meet at a shared node (floating-point addition is not
    associative; this is what makes the two engines agree to the last bit).
    Leaves (the parameters and inputs, which have no children) are left out:
    they have no gradient to pass on, so they need no place in the order, and a
    third of the work is skipping them.
    """
    order: list[Value] = []
    visited: set[Value] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif node not in visited:
            visited.add(node)
            stack.append((node, True))
            for child in reversed(node.children):
                if child.children and child not in visited:
                    stack.append((child, False))
    return order


@contextmanager
def no_cycle_collector() -> Iterator[None]:
    """Switch Python's cycle collector off for a block (graphs have no cycles)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
