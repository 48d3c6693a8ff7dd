"""tinylm's decode engine against llama.cpp, the same Llama weights read in 8 bits.

Run ``python bench/bench_llama_cpp.py`` (needs ``pip install llama-cpp-python``,
which compiles llama.cpp for this CPU, and ``gguf`` for the export). For each size a
random Llama-shaped tinylm model (GPT-2's BPE vocabulary, ``vocab/gpt2.tiktoken``,
since tinylm's GGUF export carries a BPE tokenizer) is written by
``tinylm export --format gguf --quant q8_0`` (``tinylm.interop.export``), loaded by
``llama_cpp.Llama`` and, on the other side, decoded by tinylm's ``DecodeEngine`` in
int8 and float32. Both continue the same 32-token prompt greedily for 64 tokens
(prefill included, as in ``bench_generate.py``), calls alternating, best of
``--repeats``; the thread count is set on both sides.

Q8_0 and tinylm's int8 are different 8-bit formats of the same float32 weights
(llama.cpp: a float16 scale per block of 32 numbers, and it quantises the activations
to 8 bits for its products; tinylm: a float32 scale per output row, the activations in
float32), so the tokens may part after a near-tie; the table counts the positions
where they agree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _common import data_path  # noqa: I001 (puts the checkout's src on the path first)
from tinylm.inference import native_kernels  # noqa: E402
from tinylm.inference.engine import DecodeEngine  # noqa: E402
from tinylm.interop.export import export_model  # noqa: E402
from tinylm.model import GPT, ModelConfig  # noqa: E402
from tinylm.tokenizers.formats import load_tokenizer  # noqa: E402

LLAMA = {"position": "rope", "norm": "rmsnorm", "activation": "swiglu", "bias": False}
SIZES = {
    "llama 6x288 gqa": dict(LLAMA, n_layer=6, n_embd=288, n_head=6, n_kv_head=2),
    "llama 12x768": dict(LLAMA, n_layer=12, n_embd=768, n_head=12),
}


def best_of(calls: dict[str, object], repeats: int) -> tuple[dict[str, float], dict[str, list]]:
    """Each call's best time over ``repeats`` alternating rounds, and its first output."""
    outputs = {name: call() for name, call in calls.items()}  # warm-up
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=None, help="only the sizes whose name starts so")
    args = parser.parse_args()
    import llama_cpp

    tokenizer = load_tokenizer(data_path("vocab/gpt2.tiktoken"))
    print(
        f"llama-cpp-python {llama_cpp.__version__}, torch {torch.__version__}; greedy, "
        f"{args.new_tokens} new tokens after 32, best of {args.repeats}; "
        f"tinylm kernels: {native_kernels.kernel_status().reason}"
    )
    rows = []
    for name, fields in SIZES.items():
        if args.only and not name.startswith(args.only):
            continue
        torch.manual_seed(0)
        config = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=256, **fields)
        model = GPT(config).eval()
        prompt = torch.randint(0, tokenizer.vocab_size, (32,)).tolist()
        engines = {fmt: DecodeEngine(model, fmt) for fmt in ("int8", "float32")}
        with tempfile.TemporaryDirectory() as folder:
            export_model(model, tokenizer, folder, "gguf", quant="q8_0")
            (gguf,) = Path(folder).glob("*.gguf")
            for threads in [int(t) for t in args.threads.split(",")]:
                torch.set_num_threads(threads)
                llm = llama_cpp.Llama(
                    model_path=str(gguf),
                    n_ctx=256,
                    n_threads=threads,
                    n_threads_batch=threads,
                    verbose=False,
                )

                def llama(llm=llm, prompt=prompt) -> list[int]:
                    tokens = []
                    for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
                        tokens.append(token)
                        if len(tokens) == args.new_tokens:
                            return tokens
                    return tokens

                calls = {
                    fmt: lambda e=engine, p=prompt: list(
                        e.generate(p, args.new_tokens, temperature=0)
                    )
                    for fmt, engine in engines.items()
                }
                calls["llama.cpp Q8_0"] = llama
                times, outputs = best_of(calls, args.repeats)
                same = sum(
                    a == b for a, b in zip(outputs["int8"], outputs["llama.cpp Q8_0"], strict=False)
                )
                params = sum(p.numel() for p in model.parameters())
                rows.append((threads, name, params, times, same))
                print(
                    f"  {threads} thread(s) {name}: "
                    + ", ".join(f"{k} {args.new_tokens / t:.0f} tok/s" for k, t in times.items()),
                    flush=True,
                )
                del llm
    print(
        "\n| threads | model | parameters | tinylm int8 tok/s | tinylm float32 tok/s "
        "| llama.cpp Q8_0 tok/s | int8 / llama.cpp | same tokens (int8, Q8_0) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    n = args.new_tokens
    for threads, name, params, times, same in rows:
        ours, f32, theirs = (n / times[k] for k in ("int8", "float32", "llama.cpp Q8_0"))
        print(
            f"| {threads} | {name} | {params / 1e6:.1f}M | {ours:,.0f} | {f32:,.0f} | "
            f"{theirs:,.0f} | {ours / theirs:.2f}x | {same}/{n} |"
        )


if __name__ == "__main__":
    main()
