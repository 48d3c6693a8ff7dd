"""tinylm against llama.cpp on the same GGUF: logits, tokenization, and greedy speed.

Run ``python bench/bench_llama_cpp.py`` where ``llama-cpp-python`` is installed (it
builds llama.cpp from source: ``pip install llama-cpp-python``, several minutes).
A random Llama-style tinylm model with a small BPE tokenizer (trained on the
built-in corpus) is exported with ``tinylm export --format gguf``'s code; llama.cpp
loads the file and evaluates the same token ids. Printed: the largest absolute
logit difference over every position, whether llama.cpp tokenizes text to tinylm's
ids with the embedded tokenizer, and greedy tokens/s of both (batch 1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout

from tinylm.data.corpus import corpus_from_specs  # noqa: E402
from tinylm.interop.export import export_model  # noqa: E402
from tinylm.model import GPT, ModelConfig  # noqa: E402
from tinylm.tokenizers.bpe import BPETokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side")
    args = parser.parse_args()
    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama-cpp-python is not installed: pip install llama-cpp-python")
    torch.set_num_threads(args.threads)
    text = "\n".join(doc for doc, _ in zip(corpus_from_specs([]), range(300), strict=False))
    tokenizer = BPETokenizer.train(text, 1024, special_tokens=["<|endoftext|>"], progress=False)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=256, n_layer=4, n_embd=256, n_head=8,
        n_kv_head=2, position="rope", norm="rmsnorm", activation="swiglu", bias=False,
        tie_embeddings=False,
    )  # fmt: skip
    model = GPT(config).eval()
    with torch.no_grad():  # norms away from 1, so a dropped or misplaced gain would show
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.2 * torch.randn_like(param))
    folder = Path(tempfile.mkdtemp()) / "gguf"
    export_model(model, tokenizer, folder, "gguf")
    llm = llama_cpp.Llama(
        model_path=str(folder / "model.gguf"), n_ctx=config.block_size, logits_all=True,
        n_threads=args.threads, verbose=False,
        type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32,  # default: an f16 cache
    )  # fmt: skip

    sample = text[1000:1600]
    ids = tokenizer.encode(sample)[:200]
    llm.reset()
    llm.eval(ids)
    theirs = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0][0].numpy()
    diff = float(np.abs(ours - theirs).max())
    print(f"llama.cpp {llama_cpp.__version__}: {len(ids)} positions x {config.vocab_size} logits")
    print(f"  max |logit difference| = {diff:.2e} (logits span {ours.min():.2f}..{ours.max():.2f})")
    same_ids = llm.tokenize(sample.encode("utf-8"), add_bos=False, special=True) == (
        tokenizer.encode(sample)
    )
    print(f"  llama.cpp tokenizes the text to tinylm's ids: {same_ids}")

    prompt = ids[:32]
    n = args.new_tokens

    def ours_run() -> list[int]:
        return list(model.generate(prompt, n, temperature=0))

    def theirs_run() -> list[int]:
        llm.reset()
        out: list[int] = []
        for token in llm.generate(prompt, temp=0.0, top_k=1):
            out.append(token)
            if len(out) == n:
                break
        return out

    best = {"tinylm": float("inf"), "llama.cpp": float("inf")}
    tokens: dict[str, list[int]] = {}
    for _ in range(args.repeats):  # the sides alternate, best of each: a busy machine
        for name, run in (("tinylm", ours_run), ("llama.cpp", theirs_run)):
            start = time.perf_counter()
            tokens[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
    print(
        f"  greedy, batch 1, best of {args.repeats}: tinylm {n / best['tinylm']:.0f} tok/s, "
        f"llama.cpp {n / best['llama.cpp']:.0f} tok/s "
        f"(tinylm / llama.cpp speed {best['llama.cpp'] / best['tinylm']:.2f}x); "
        f"same tokens: {tokens['tinylm'] == tokens['llama.cpp']}"
    )


if __name__ == "__main__":
    main()
