"""The baseline of ``bench_scratch.py``: a textbook scalar autograd engine and microgpt on it.

The same design as ``tinylm.scratch`` (six primitives, a topological sort, the
chain rule, the same model, the same Adam), written the way it is usually first
written, in three ways ``tinylm.scratch`` is not:

* the topological sort is recursive (so it needs a raised recursion limit);
* every plain number in an operation becomes a ``Value`` of its own;
* every sum is a chain of binary adds (Python's ``sum``).

It computes the same numbers, in the same order, as ``tinylm.scratch`` (each
softmax divides by its total through one shared inverse, and each residual adds
the block's output to its input, as ``tinylm.scratch`` does): the benchmark
checks that the two give bit-identical losses, step after step.
"""

from __future__ import annotations

import math
import sys

sys.setrecursionlimit(100_000)  # the recursive sort goes as deep as the graph


class Value:
    def __init__(self, data, children=(), local_grads=()):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other):
        return Value(self.data**other, (self,), (other * self.data ** (other - 1),))

    def log(self):
        return Value(math.log(self.data), (self,), (1 / self.data,))

    def exp(self):
        return Value(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self):
        return Value(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self):
        return self * -1

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return other + (-self)

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * other**-1

    def __rtruediv__(self, other):
        return other * self**-1

    def backward(self):
        topo, visited = [], set()

        def build_topo(v):
            if v not in visited:
                visited.add(v)
                for child in v._children:
                    build_topo(child)
                topo.append(v)

        build_topo(self)
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads, strict=True):
                child.grad += local_grad * v.grad


def linear(x, w):
    return [sum(wi * xi for wi, xi in zip(wo, x, strict=True)) for wo in w]


def softmax(logits):
    max_val = max(val.data for val in logits)
    exps = [(val - max_val).exp() for val in logits]
    total = sum(exps)
    inverse = total**-1  # once, not once per entry: the same numbers as tinylm.scratch
    return [e * inverse for e in exps]


def rmsnorm(x, eps):
    ms = sum(xi * xi for xi in x) / len(x)
    scale = (ms + eps) ** -0.5
    return [xi * scale for xi in x]


class BaselineGPT:
    """microgpt on the textbook ``Value``; weights by ``GPT.state_dict()`` name."""

    def __init__(self, weights, n_layer, n_head, eps=1e-5):
        self.n_layer, self.n_head, self.eps = n_layer, n_head, eps
        self.state = {k: [[Value(x) for x in row] for row in m] for k, m in weights.items()}
        self.params = [p for m in self.state.values() for row in m for p in row]

    def gpt(self, token_id, pos_id, keys, values):
        sd = self.state
        n_embd = len(sd["tok_emb.weight"][0])
        head_dim = n_embd // self.n_head
        x = [
            t + p
            for t, p in zip(
                sd["tok_emb.weight"][token_id], sd["pos_emb.weight"][pos_id], strict=True
            )
        ]
        x = rmsnorm(x, self.eps)
        for li in range(self.n_layer):
            pre = f"blocks.{li}."
            x_residual = x
            x = rmsnorm(x, self.eps)
            q = linear(x, sd[pre + "attn.w_q.weight"])
            keys[li].append(linear(x, sd[pre + "attn.w_k.weight"]))
            values[li].append(linear(x, sd[pre + "attn.w_v.weight"]))
            x_attn = []
            for h in range(self.n_head):
                hs = h * head_dim
                q_h = q[hs : hs + head_dim]
                k_h = [ki[hs : hs + head_dim] for ki in keys[li]]
                v_h = [vi[hs : hs + head_dim] for vi in values[li]]
                attn_logits = [
                    sum(q_h[j] * k_h[t][j] for j in range(head_dim)) / head_dim**0.5
                    for t in range(len(k_h))
                ]
                attn_weights = softmax(attn_logits)
                x_attn.extend(
                    sum(attn_weights[t] * v_h[t][j] for t in range(len(v_h)))
                    for j in range(head_dim)
                )
            x = linear(x_attn, sd[pre + "attn.w_o.weight"])
            x = [a + b for a, b in zip(x_residual, x, strict=True)]
            x_residual = x
            x = rmsnorm(x, self.eps)
            x = linear(x, sd[pre + "ffn.w1.weight"])
            x = [xi.relu() for xi in x]
            x = linear(x, sd[pre + "ffn.w2.weight"])
            x = [a + b for a, b in zip(x_residual, x, strict=True)]
        return linear(x, sd["lm_head.weight"])

    def loss(self, tokens):
        keys = [[] for _ in range(self.n_layer)]
        values = [[] for _ in range(self.n_layer)]
        losses = []
        for pos_id in range(len(tokens) - 1):
            logits = self.gpt(tokens[pos_id], pos_id, keys, values)
            probs = softmax(logits)
            losses.append(-probs[tokens[pos_id + 1]].log())
        return (1 / len(losses)) * sum(losses)


class BaselineAdam:
    """The same update as ``tinylm.scratch.train.Adam`` (no weight decay)."""

    def __init__(self, params, betas=(0.85, 0.99), eps=1e-8):
        self.params, self.betas, self.eps = params, betas, eps
        self.m = [0.0] * len(params)
        self.v = [0.0] * len(params)
        self.t = 0

    def step(self, lr):
        beta1, beta2 = self.betas
        self.t += 1
        correction1 = 1 - beta1**self.t
        root_correction2 = math.sqrt(1 - beta2**self.t)
        for i, p in enumerate(self.params):
            g = p.grad
            self.m[i] = self.m[i] + (1 - beta1) * (g - self.m[i])
            self.v[i] = self.v[i] * beta2 + (1 - beta2) * g * g
            denominator = math.sqrt(self.v[i]) / root_correction2 + self.eps
            p.data -= lr / correction1 * self.m[i] / denominator
            p.grad = 0
