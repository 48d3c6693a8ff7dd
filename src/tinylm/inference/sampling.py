"""Turning a trained model's token stream into text, as it is produced.

``GPT.generate`` yields token ids one at a time; :func:`stream_text` turns them
into text pieces one at a time, so ``tinylm sample`` can print as the model
writes. A byte-level BPE token can be half a UTF-8 character, so a piece is only
handed out once the decoded text no longer ends in the replacement character
``U+FFFD`` that a cut multi-byte sequence decodes to.
"""

from __future__ import annotations

from collections.abc import Iterator

from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer


def prompt_ids(tokenizer: Tokenizer, prompt: str = "") -> list[int]:
    """The ids to start from: BOS (when the tokenizer has one) then the prompt.

    Starting with BOS is how every training document starts, so an empty prompt
    asks for "the beginning of a document".
    """
    ids = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    ids += tokenizer.encode(prompt) if prompt else []
    if not ids:
        raise TinylmError("this tokenizer has no BOS token; give a --prompt to start from")
    return ids


def stream_text(
    model, tokenizer: Tokenizer, prompt: str = "", max_tokens: int = 200, **sampling
) -> Iterator[str]:
    """Yield pieces of generated text (the prompt not included) as tokens arrive.

    ``sampling`` is passed to ``model.generate`` (temperature, top_k, top_p,
    seed). Generation stops at the end-of-document token, except before any
    token was produced: documents are stored as ``... [EOS] [BOS] ...``, and
    when the two are one id (the char tokenizer) a model that has just seen it
    rightly predicts it again half the time, which would end every other sample
    before it began. There it is kept as context instead.
    """
    stops = set() if tokenizer.eos_id is None else {tokenizer.eos_id}
    ids: list[int] = []
    emitted = 0
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
