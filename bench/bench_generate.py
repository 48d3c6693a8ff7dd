"""Greedy generation throughput: tinylm against transformers' ``generate``, same weights.

Run ``python bench/bench_generate.py`` (a few minutes on 2 cores; ``--quick`` skips the
GPT-2-small shape). For each model size a random tinylm model is built, and the
transformers model equal to it (``GPT2LMHeadModel`` or ``LlamaForCausalLM``, from the
same config.json and tensors that ``tinylm export --format hf`` writes). Both then
continue the same prompts greedily for the same number of tokens, with KV caches:

* batch 1: one prompt; tinylm's decode engine (``tinylm.inference.engine``, built once
  from the model, outside the timing, as transformers' model is) and its streaming
  ``generate``;
* batch 8: eight prompts of different lengths; the engine's ``generate_batch`` and
  transformers' ``generate`` with left padding and an attention mask.

``--weights float32,bfloat16,int8`` adds a row per weight format of the engine, each
against transformers in float32 (the same weights, read at their own precision).

Tokens/s counts new tokens over the whole call (prefill included); each figure is the
best of ``--repeats`` calls, the two sides' calls alternating. The two must produce
the same tokens (checked, printed). The ratio is tinylm's tokens/s over transformers'.

Bytes per token: a decode step reads every weight matrix once for the whole batch, so
each new token costs the engine's packed weight bytes (the token table aside: a step
reads one row of it) divided by the batch. Against the machine's memory bandwidth,
measured here by summing a 512 MB tensor, that gives the most tokens/s any engine
reading those bytes could reach at batch 1; the table prints it and the share of it
tinylm reached. ``--threads 1,2`` repeats every row at each thread count.

Where the time goes: one more tinylm call per row runs under ``torch.profiler``, and
the share of its CPU time spent in matrix multiplies (``aten::addmm``, ``mm``,
``bmm``: the same kernels transformers calls on the same weights) is printed, with
the ceiling it puts on the ratio: transformers' time over tinylm's matmul time, the
ratio tinylm would reach if everything else it does took no time at all. The
profiler's own cost falls mostly on the many small operations, so the share is a
lower bound and the ceiling an upper bound.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout

from tinylm.inference import native_kernels  # noqa: E402
from tinylm.inference.engine import DecodeEngine  # noqa: E402
from tinylm.interop.hf_config import hf_architecture, to_hf_config  # noqa: E402
from tinylm.interop.hf_weights import to_hf_state_dict  # noqa: E402
from tinylm.model import GPT, ModelConfig  # noqa: E402

GPT2 = {"position": "learned", "norm": "layernorm", "activation": "gelu_tanh"}
LLAMA = {"position": "rope", "norm": "rmsnorm", "activation": "swiglu", "bias": False}
SIZES = {
    "gpt2 2x128": dict(GPT2, vocab_size=2048, n_layer=2, n_embd=128, n_head=4),
    "gpt2 6x384": dict(GPT2, vocab_size=8192, n_layer=6, n_embd=384, n_head=6),
    "llama 6x288 gqa": dict(LLAMA, vocab_size=8192, n_layer=6, n_embd=288, n_head=6, n_kv_head=2),
    "gpt2-small 12x768": dict(GPT2, vocab_size=50257, n_layer=12, n_embd=768, n_head=12),
}


def hf_twin(model: GPT):
    """The transformers model computing what ``model`` computes (same tensors)."""
    import transformers

    family = hf_architecture(model.config)
    config_dict = to_hf_config(model.config)
    config_dict.pop("architectures")
    config_dict.pop("model_type")
    if family == "gpt2":
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config_dict))
    else:
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config_dict))
    missing, unexpected = hf.load_state_dict(
        to_hf_state_dict(model.state_dict(), model.config, family), strict=False
    )
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    hf.tie_weights()
    return hf.eval()


def alternating_times(
    fns: list[Callable[[], object]], repeats: int
) -> list[tuple[list[float], object]]:
    """Each function's times over ``repeats`` calls, and its output.

    The calls alternate (a, b, a, b, ...) rather than running one side's repeats
    and then the other's, so a change in the machine's load during the run hits
    both sides alike instead of skewing the ratio; call ``i`` of each side is a pair.
    """
    outputs = [fn() for fn in fns]  # warm-up, and the outputs to compare
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - start)
    return list(zip(times, outputs, strict=True))


def pair_spread(slower: list[float], faster: list[float]) -> str:
    """The lowest and highest ratio over the alternating pairs: how far the machine moved it."""
    ratios = [a / b for a, b in zip(slower, faster, strict=True)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}x"


#: torch's matrix multiplies, and tinylm's C kernels for int8 and bfloat16 weights
#: (named to the profiler by ``matmul_share``).
MATMULS = {"aten::addmm", "aten::mm", "aten::bmm", "tinylm::native_matmul"}


def matmul_share(fn: Callable[[], object]) -> float:
    """The fraction of ``fn``'s CPU time (self time, all ops) spent in matrix multiplies."""
    from torch.profiler import ProfilerActivity, profile

    call_kernel = native_kernels.call_kernel

    def named_kernel(*args) -> None:  # the profiler cannot see inside a C call: name it
        with torch.profiler.record_function("tinylm::native_matmul"):
            call_kernel(*args)

    native_kernels.call_kernel = named_kernel
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
    finally:
        native_kernels.call_kernel = call_kernel
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / total


def hf_generate(hf, prompts: list[list[int]], n_new: int) -> list[list[int]]:
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for b, prompt in enumerate(prompts):  # left padding, as transformers asks of decoders
        ids[b, width - len(prompt) :] = torch.tensor(prompt)
        mask[b, width - len(prompt) :] = 1
    with torch.no_grad():
        out = hf.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=n_new,
            min_new_tokens=n_new,
            do_sample=False,
            pad_token_id=0,
        )
    return out[:, width:].tolist()


def memory_bandwidth(megabytes: int = 512, rounds: int = 5) -> float:
    """Bytes per second this machine reads from memory: the best of summing a large tensor.

    The tensor is far larger than any cache, so each sum streams it from memory once,
    as a decode step streams the weights.
    """
    data = torch.ones(megabytes * 2**20 // 4)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(rounds):
            start = time.perf_counter()
            data.sum()
            best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best


def step_bytes(engine: DecodeEngine) -> int:
    """Bytes of weights one decode step reads: all packed matrices but the token table."""
    table = engine.token_table
    return engine.nbytes - (0 if table is None else table.nbytes)


def measure(
    name: str,
    fields: dict,
    n_new: int,
    repeats: int,
    weights: tuple[str, ...] = ("float32",),
    bandwidth: float = float("nan"),
) -> list[tuple]:
    torch.manual_seed(0)
    model = GPT(ModelConfig(block_size=256, **fields)).eval()
    engines = {fmt: DecodeEngine(model, fmt) for fmt in weights}
    hf = hf_twin(model)
    hf.generation_config.max_length = None
    params = model.num_params()
    generator = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    rows = []
    for batch, fmt in [(b, f) for b in (1, 8) for f in weights]:
        lengths = [32] if batch == 1 else [16 + 5 * i for i in range(batch)]
        prompts = [torch.randint(0, vocab, (n,), generator=generator).tolist() for n in lengths]
        engine = engines[fmt]
        if batch == 1:
            ours = lambda p=prompts[0], e=engine: [list(e.generate(p, n_new, temperature=0))]  # noqa: E731
        else:
            ours = lambda p=prompts, e=engine: e.generate_batch(p, n_new, temperature=0)  # noqa: E731
        theirs = lambda p=prompts: hf_generate(hf, p, n_new)  # noqa: E731
        (times_ours, out_ours), (times_hf, out_hf) = alternating_times([ours, theirs], repeats)
        t_ours, t_hf = min(times_ours), min(times_hf)
        spread = pair_spread(times_hf, times_ours)
        tokens = batch * n_new
        same = sum(a == b for a, b in zip(out_ours, out_hf, strict=True))
        share = matmul_share(ours)
        ceiling = t_hf / (t_ours * share)
        label = name if fmt == "float32" else f"{name} {fmt}"
        per_token = step_bytes(engine) / batch
        bound = bandwidth / per_token  # tokens/s if a step took only its weight reads
        rows.append(
            (label, params, batch, tokens / t_ours, tokens / t_hf, spread, same, share, ceiling)
            + (engine.nbytes, per_token, tokens / t_ours / bound)
        )
        print(
            f"  {label:<18} batch {batch}: tinylm {tokens / t_ours:8.0f} tok/s, "
            f"transformers {tokens / t_hf:8.0f} tok/s, ratio {t_hf / t_ours:5.2f}x "
            f"(pairs {spread}), "
            f"rows identical {same}/{batch}; tinylm in matmuls {share:.0%}, "
            f"ceiling {ceiling:.2f}x; {per_token / 1e6:.1f} MB/token, "
            f"{tokens / t_ours / bound:.0%} of the bandwidth bound",
            flush=True,
        )
    return rows


def matvec_times(out_features: int, in_features: int, rounds: int = 3) -> tuple[float, float]:
    """Best time of one ``(1, in) @ (out, in)^T`` product, row-major then column-major weight.

    Enough distinct weights are cycled through (at least 64 MB) that each call reads
    its weight from memory, not from a cache, as a decode step does.
    """
    import torch.nn.functional as F

    copies = max(2, int(64e6 // (out_features * in_features * 4)))
    rows = [torch.randn(out_features, in_features) for _ in range(copies)]
    cols = [w.t().contiguous().t() for w in rows]  # same shape and values, other strides
    x = torch.randn(1, in_features)
    best = []
    with torch.inference_mode():
        for weights in (rows, cols):
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                for w in weights:
                    F.linear(x, w)
                times.append((time.perf_counter() - start) / len(weights))
            best.append(min(times))
    return best[0], best[1]


def layouts_table(sizes: dict[str, dict]) -> None:
    """Each weight shape of the benchmark's models: matvec time in both layouts.

    Beside the linear layers' own shapes, the joined query/key/value matrix that
    decoding multiplies instead of W_q, W_k and W_v (``tinylm.inference.engine``).
    """
    from tinylm.model.attention import CausalSelfAttention

    shapes: dict[tuple[int, int], str] = {}
    for fields in sizes.values():
        model = GPT(ModelConfig(block_size=256, **fields))
        for module in model.modules():
            if isinstance(module, CausalSelfAttention):
                rows = sum(p.out_features for p in (module.w_q, module.w_k, module.w_v))
                shapes[(rows, module.w_q.in_features)] = "column-major (joined Q/K/V)"
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                widening = module.out_features > module.in_features
                shape = (module.out_features, module.in_features)
                shapes.setdefault(shape, "column-major" if widening else "row-major")
    print("\n| weight (out, in) | row-major | column-major | row / column | decoding uses |")
    print("|---|---:|---:|---:|---|")
    for (out_features, in_features), used in sorted(
        shapes.items(), key=lambda s: s[0][0] * s[0][1]
    ):
        row, col = matvec_times(out_features, in_features)
        print(
            f"| ({out_features}, {in_features}) | {row * 1e6:.0f} us | {col * 1e6:.0f} us | "
            f"{row / col:.2f} | {used} |",
            flush=True,
        )


#: GPT-2 small's matrices as decoding multiplies them: joined Q/K/V, W_O, the
#: feed-forward's two, the output head.
GPT2_SMALL_MATRICES = [(2304, 768), (768, 768), (3072, 768), (768, 3072), (50257, 768)]


def kernels_table(threads: list[int], bandwidth: float, rounds: int = 3) -> None:
    """One ``(1, in)`` product per weight format and shape: time and bytes read per second.

    As in :func:`matvec_times`, at least 64 MB of distinct weights are cycled so each
    product reads its weight from memory. float32 is the engine's layout (column-major
    when widening); ``int8 via torch`` is the fallback without tinylm's C kernels. GB/s
    counts the weight's own bytes: the share of ``bandwidth`` shows whether a product
    is bound by reading (near 100%) or by computing.
    """
    from tinylm.inference.weight_formats import (
        BFloat16Linear,
        Float32Linear,
        Int8Linear,
        int8_matmul_reference,
    )

    print(
        f"\n| threads | weight (out, in) | format | time | GB/s | of {bandwidth / 1e9:.1f} GB/s "
        "| vs float32 |"
    )
    print("|---:|---|---|---:|---:|---:|---:|")
    for count in threads:
        torch.set_num_threads(count)
        for out_features, in_features in GPT2_SMALL_MATRICES:
            copies = max(2, int(64e6 // (out_features * in_features * 4)))
            weights = [torch.randn(out_features, in_features) * 0.02 for _ in range(copies)]
            x = torch.randn(1, in_features)
            formats = {
                "float32": [Float32Linear(w, None) for w in weights],
                "bfloat16": [BFloat16Linear(w, None) for w in weights],
                "int8": [Int8Linear(w, None) for w in weights],
            }
            products = {
                name: [lambda lin=lin, x=x: lin(x) for lin in layers]
                for name, layers in formats.items()
            }
            products["int8 via torch"] = [
                lambda lin=lin, x=x: int8_matmul_reference(x, lin.q, lin.scale)
                for lin in formats["int8"]
            ]
            nbytes = {name: layers[0].nbytes for name, layers in formats.items()}
            nbytes["int8 via torch"] = nbytes["int8"]
            times = {}
            with torch.inference_mode():
                for name, calls in products.items():
                    best = float("inf")
                    for _ in range(rounds):
                        start = time.perf_counter()
                        for call in calls:
                            call()
                        best = min(best, (time.perf_counter() - start) / len(calls))
                    times[name] = best
            for name, seconds in times.items():
                rate = nbytes[name] / seconds
                print(
                    f"| {count} | ({out_features}, {in_features}) | {name} | "
                    f"{seconds * 1e6:,.0f} us | {rate / 1e9:.1f} | {rate / bandwidth:.0%} | "
                    f"{times['float32'] / seconds:.2f}x |",
                    flush=True,
                )
            del weights, formats, products


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the GPT-2-small shape")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", default="1", help="torch intra-op threads; a list (1,2) repeats each row"
    )
    parser.add_argument("--only", default=None, help="only the sizes whose name starts so")
    parser.add_argument(
        "--weights",
        default="float32",
        help="the engine's weight formats, comma-separated: float32, bfloat16, int8",
    )
    parser.add_argument(
        "--kernels",
        action="store_true",
        help="only time GPT-2 small's products in each weight format, against the bandwidth",
    )
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="only time each weight shape's matrix-vector product in both memory layouts",
    )
    args = parser.parse_args()
    thread_counts = [int(n) for n in args.threads.split(",")]
    torch.set_num_threads(thread_counts[0])
    if args.layouts:
        sizes = {k: v for k, v in SIZES.items() if not (args.quick and k.startswith("gpt2-small"))}
        layouts_table(sizes)
        return
    if args.kernels:
        print(f"int8/bfloat16 kernels: {native_kernels.kernel_status().reason}")
        kernels_table(thread_counts, memory_bandwidth())
        return
    import transformers

    bandwidth = memory_bandwidth()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{platform.machine()}, thread(s) {args.threads}; greedy, {args.new_tokens} new tokens, "
        f"best of {args.repeats}; memory bandwidth {bandwidth / 1e9:.1f} GB/s (one thread)"
    )
    kernels = native_kernels.kernel_status()  # int8 and bfloat16 read their bytes in C
    print(f"int8/bfloat16 kernels: {kernels.reason}" + ("" if kernels.available else " (torch)"))
    rows = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for name, fields in SIZES.items():
            if (args.quick and name.startswith("gpt2-small")) or (
                args.only and not name.startswith(args.only)
            ):
                continue
            formats = tuple(args.weights.split(","))
            measured = measure(name, fields, args.new_tokens, args.repeats, formats, bandwidth)
            rows += [(threads, *row) for row in measured]
    print(
        "\n| threads | model | parameters | batch | tinylm tok/s | transformers tok/s | ratio "
        "| ratio per pair | same | tinylm in matmuls | ceiling | weights MB | MB/token "
        "| of bandwidth bound |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        threads, name, params, batch, ours, theirs, spread, same, share, ceiling = row[:10]
        resident, per_token, of_bound = row[10:]
        print(
            f"| {threads} | {name} | {params / 1e6:.1f}M | {batch} | {ours:,.0f} | "
            f"{theirs:,.0f} | {ours / theirs:.2f}x | {spread} | {same}/{batch} | {share:.0%} | "
            f"{ceiling:.2f}x | {resident / 1e6:.1f} | {per_token / 1e6:.2f} | {of_bound:.0%} |"
        )


if __name__ == "__main__":
    main()
