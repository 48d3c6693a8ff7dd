"""What each weight format costs in quality: loss, bits per byte and greedy agreement.

Run ``python bench/quality_formats.py --run RUN`` (a trained run; its held-out split)
and/or ``--gpt2-small`` (a GPT-2-small-shaped model; no GPT-2 weights are on disk here,
so it is a random init of that shape, tinylm's init, with GPT-2's own BPE from
``vocab/gpt2.tiktoken``, scored on the TinyStories validation head).

For each weight format of the decode engine (``float32``, ``bfloat16``, ``int8``):

* the mean next-token loss and bits per byte on held-out text, every window scored
  once in order, through the engine's teacher-forced ``logits`` (float32 is the
  reference the others are compared with: the change in loss, in percent);
* greedy agreement: ``--prompts`` prompts (windows of the held-out tokens) each
  continued ``--tokens`` tokens at temperature 0 by float32 and by the format, and the
  share of positions where the two chose the same token. Once a near-tie goes the other
  way the two texts part, so the share of identical prefixes is printed beside it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from _common import data_path  # noqa: I001 (puts the checkout's src on the path first)
from tinylm.data.batches import sequential_batches  # noqa: E402
from tinylm.inference.engine import DecodeEngine  # noqa: E402
from tinylm.inference.evaluation import (  # noqa: E402
    eval_tokens,
    full_pass_loss,
    token_byte_table,
)
from tinylm.inference.loading import load_model  # noqa: E402
from tinylm.model import GPT, ModelConfig  # noqa: E402
from tinylm.tokenizers.formats import load_tokenizer  # noqa: E402

FORMATS = ("float32", "bfloat16", "int8")
GPT2_SMALL = dict(
    vocab_size=50257,
    block_size=1024,
    n_layer=12,
    n_embd=768,
    n_head=12,
    position="learned",
    norm="layernorm",
    activation="gelu_tanh",
    bias=True,
)


class EngineLogits(nn.Module):
    """An engine seen as a model whose forward gives ``(logits, None)``, for ``loss_sum``."""

    def __init__(self, engine: DecodeEngine) -> None:
        super().__init__()
        self.engine = engine

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.engine.logits(idx), None


def held_out_loss(engine, tokens, window: int, batch_size: int, max_batches: int, token_bytes):
    batches = sequential_batches(tokens, window, batch_size, "cpu", max_batches)
    return full_pass_loss(EngineLogits(engine), batches, token_bytes)


def prompts_from(tokens, count: int, length: int) -> list[list[int]]:
    """``count`` windows of ``length`` tokens, spread evenly over the held-out tokens."""
    step = (len(tokens) - length) // count
    return [[int(t) for t in tokens[i * step : i * step + length]] for i in range(count)]


def agreement(reference: list[list[int]], other: list[list[int]]) -> tuple[float, float]:
    """(share of positions with the same token, share of rows identical throughout)."""
    same = total = whole = 0
    for a, b in zip(reference, other, strict=True):
        same += sum(x == y for x, y in zip(a, b, strict=False))
        total += len(a)
        whole += a == b
    return same / total, whole / len(reference)


def compare(name: str, model: GPT, tokenizer, tokens, args) -> None:
    window = min(args.window, model.config.block_size)
    token_bytes = token_byte_table(tokenizer)
    prompts = prompts_from(tokens, args.prompts, args.prompt_len)
    print(f"\n## {name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    print(
        f"held-out: {min(len(tokens) - 1, args.max_batches * args.batch_size * window):,} "
        f"tokens in windows of {window}; {args.prompts} prompts x {args.tokens} greedy tokens"
    )
    print("| format | loss | change | bpb | same token | same text | s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    reference_loss = reference_rows = None
    for fmt in args.formats:
        start = time.perf_counter()
        engine = DecodeEngine(model, fmt)
        scored = held_out_loss(
            engine, tokens, window, args.batch_size, args.max_batches, token_bytes
        )
        rows = engine.generate_batch(prompts, args.tokens, temperature=0)
        if reference_loss is None:
            reference_loss, reference_rows = scored["loss"], rows
        change = 100 * (scored["loss"] - reference_loss) / reference_loss
        same, whole = agreement(reference_rows, rows)
        print(
            f"| {fmt} | {scored['loss']:.4f} | {change:+.3f}% | {scored['bpb']:.4f} | "
            f"{same:.1%} | {whole:.0%} | {time.perf_counter() - start:.0f} |",
            flush=True,
        )


def run_held_out(run: Path):
    """The run's own held-out split: the prepared data its training cached."""
    cached = sorted(p.parent for p in (run / "data").glob("*/meta.json"))
    if not cached:
        raise SystemExit(f"{run} has no cached prepared data (data/*/meta.json); give --data")
    return cached[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained run (its latest checkpoint)")
    parser.add_argument("--data", help="held-out text or prepared folder for --run")
    parser.add_argument("--gpt2-small", action="store_true", help="the GPT-2-small shape")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--window", type=int, default=256, help="tokens per scored window")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-batches", type=int, default=8)
    args = parser.parse_args()
    args.formats = args.formats.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.run is not None:
        model, tokenizer, meta = load_model(args.run)
        data = args.data or run_held_out(args.run)
        found = eval_tokens(tokenizer, data, "val")
        compare(
            f"{args.run} (step {meta.step}), {found.description}",
            model,
            tokenizer,
            found.tokens,
            args,
        )
    if args.gpt2_small:
        tokenizer = load_tokenizer(data_path("vocab/gpt2.tiktoken"))
        text = data_path("corpora/tinystories_valid_head.txt").read_text()[:200_000]
        tokens = torch.tensor(tokenizer.encode(text))
        torch.manual_seed(0)
        model = GPT(ModelConfig(**GPT2_SMALL)).eval()
        compare(
            "GPT-2-small shape, random init (seed 0), TinyStories valid head",
            model,
            tokenizer,
            tokens,
            args,
        )


if __name__ == "__main__":
    main()
