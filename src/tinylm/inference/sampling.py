"""Turning a trained model's token stream into text, as it is produced.

``GPT.generate`` yields token ids one at a time; :func:`stream_text` turns them
into text pieces one at a time, so ``tinylm sample`` can print as the model
writes. A byte-level BPE token can be half a UTF-8 character, so a piece is only
handed out once the decoded text no longer ends in the replacement character
``U+FFFD`` that a cut multi-byte sequence decodes to.
"""

from __future__ import annotations

from collections.abc import Iterator

from tinylm.errors import SettingError
from tinylm.tokenizers.base import Tokenizer


def prompt_ids(tokenizer: Tokenizer, prompt: str = "") -> list[int]:
    """The ids to start from: BOS (when the tokenizer has one) then the prompt.

    Starting with BOS is how every training document starts, so an empty prompt
    asks for "the beginning of a document".
    """
    ids = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    ids += tokenizer.encode(prompt) if prompt else []
    if not ids:
        raise SettingError(
            "this tokenizer has no BOS token; give a prompt to start from", setting="prompt"
        )
    return ids


def sampleable_ids(model, tokenizer: Tokenizer) -> list[int] | None:
    """The ids the tokenizer can decode, when the model could sample others (else ``None``).

    Others are the gaps of the tokenizer's vocabulary, and the ids of a model whose
    ``vocab_size`` is larger than the tokenizer's (padded for speed): sampled, they
    would fail to decode, so generation never picks them.
    """
    defined = tokenizer.defined_ids()
    config = getattr(model, "config", None)  # a stand-in model may have none: trust its ids
    model_vocab = tokenizer.vocab_size if config is None else config.vocab_size
    if defined is None and tokenizer.vocab_size >= model_vocab:
        return None
    return list(range(tokenizer.vocab_size)) if defined is None else defined


def stream_text(
    model, tokenizer: Tokenizer, prompt: str = "", max_tokens: int = 200, **sampling
) -> Iterator[str]:
    """Yield pieces of generated text (the prompt not included) as tokens arrive.

    ``model`` is a ``GPT`` (generation runs on a float32 ``DecodeEngine`` built
    from it) or a ``DecodeEngine`` in the weight format of your choice.
    ``sampling`` is passed to its ``generate`` (temperature, top_k, top_p, seed).
    Generation stops at the end-of-document token, except before any
    token was produced: documents are stored as ``... [EOS] [BOS] ...``, and
    when the two are one id (the char tokenizer) a model that has just seen it
    rightly predicts it again half the time, which would end every other sample
    before it began. There it is kept as context instead.
    """
    stops = set() if tokenizer.eos_id is None else {tokenizer.eos_id}
    ids: list[int] = []
    emitted = 0
    sampling.setdefault("allowed_ids", sampleable_ids(model, tokenizer))
    model = decoder_for(model)
    for token in model.generate(prompt_ids(tokenizer, prompt), max_tokens, **sampling):
        if token in stops:
            if ids:
                break
            continue
        ids.append(token)
        text = tokenizer.decode(ids)
        if text.endswith("\ufffd"):
            continue  # wait for the rest of a multi-byte character
        yield text[emitted:]
        emitted = len(text)
    text = tokenizer.decode(ids)
    if len(text) > emitted:
        yield text[emitted:]


def sample_text(
    model, tokenizer: Tokenizer, prompt: str = "", max_tokens: int = 200, **sampling
) -> str:
    """The whole generated continuation as one string."""
    return "".join(stream_text(model, tokenizer, prompt, max_tokens, **sampling))


def sample_texts(
    model, tokenizer: Tokenizer, prompt: str = "", max_tokens: int = 200, num: int = 2, **sampling
) -> list[str]:
    """``num`` continuations of one prompt, generated together as one batch.

    One forward pass per step serves every sample (``generate_batch``), which on a
    CPU is several times faster than ``num`` passes. The end-of-document rule is
    :func:`stream_text`'s: a leading end token is context, the next one ends the text.
    ``sampling`` (temperature, top_k, top_p, seed) is passed to ``generate_batch``;
    one seed draws all rows.
    """
    # torch-free start-up: cli/train_cmds imports this module for every tinylm command
    from tinylm.model.generate import generate_batch

    check_batch_fits(model, num)
    start = prompt_ids(tokenizer, prompt)
    sampling.setdefault("allowed_ids", sampleable_ids(model, tokenizer))
    rows = generate_batch(decoder_for(model), [start] * num, max_tokens, **sampling)
    return [tokenizer.decode(_until_end(row, tokenizer.eos_id)) for row in rows]


def decoder_for(model):
    """What generates for ``model``: a float32 ``DecodeEngine`` for a ``GPT``, else ``model``.

    A ``DecodeEngine`` (any weight format) is used as given, and so is a stand-in
    with its own ``generate``. A ``GPT`` with LoRA adapters (a LoRA run's samples
    during training) generates itself: the engine packs plain linear layers only.
    """
    # torch-free start-up: cli/train_cmds imports this module for every tinylm command
    from tinylm.inference.engine import DecodeEngine
    from tinylm.model.gpt import GPT
    from tinylm.model.lora import has_lora

    return DecodeEngine(model) if isinstance(model, GPT) and not has_lora(model) else model


def _until_end(ids: list[int], eos: int | None) -> list[int]:
    """The ids before the first end token that follows some text (leading ones dropped)."""
    kept: list[int] = []
    for token in ids:
        if token == eos:
            if kept:
                break
            continue
        kept.append(token)
    return kept


def generation_bytes(config, rows: int) -> int:
    """A low estimate of the bytes generating ``rows`` samples at once needs.

    Each row keeps a key and a value per layer for every position of the window
    (the KV cache, float32), and each step makes a row of logits over the
    vocabulary, with its softmax. Activations and the weights are left out, so
    the estimate is on the low side: a batch that fits is never refused.
    """
    kv_width = config.kv_heads * (config.n_embd // config.n_head)
    cache = 2 * config.n_layer * config.block_size * kv_width
    return rows * (cache + 2 * config.vocab_size) * 4


def check_batch_fits(model, rows: int) -> None:
    """Refuse ``rows`` samples that cannot fit in the model's device's free memory.

    ``num=100000000`` would otherwise fail inside an allocation (or be killed by
    the operating system after minutes of swapping), and a number too large for
    an index fails with an ``OverflowError``: both are a count the user typed.
    """
    # torch-free start-up: tinylm.device imports torch
    from tinylm.device import available_bytes, gib

    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise SettingError(f"num must be a positive whole number, got {rows!r}", setting="num")
    device = model.device if hasattr(model, "device") else next(model.parameters()).device
    free = available_bytes(device)
    needed = generation_bytes(model.config, rows)
    if free is not None and needed > free:
        raise SettingError(
            f"{rows:,} samples at once need at least {gib(needed)} of memory (their KV "
            f"caches and logits) but {device.type} has {gib(free)} free; ask for fewer samples",
            setting="num",
            reason="out_of_memory",
        )
