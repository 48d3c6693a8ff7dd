"""Preference pairs: a prompt, the reply people preferred and the one they did not (DPO's data).

One JSON object per line, the convention of Hugging Face preference datasets::

    {"prompt": "What is 2 + 2?", "chosen": "4.", "rejected": "5."}
    {"prompt": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is 2 + 2?"}],
     "chosen": "4.", "rejected": "Let me think about that for a while."}

``prompt`` is a string (one user turn) or a list of messages in the conversations
format (:mod:`tinylm.chat.conversations`) that ends with a user turn; ``chosen``
and ``rejected`` are the two assistant replies to it, as strings. Every line is
checked, and a bad one stops the read with one line naming ``file:line``: not JSON,
a field missing or of the wrong type, a prompt list that does not end with the
user, text holding a lone surrogate, or two replies that are the same (a pair
that teaches nothing). Other keys are ignored; blank lines are skipped.

:func:`render_pair` turns a pair into the ids of both conversations and a mask
that is true on the **final reply only** (its tokens and its ``<|end|>``): DPO
compares how likely the two replies are, so an earlier assistant turn inside the
prompt is context, not part of either reply.

:func:`builtin_preferences` makes a set offline from the built-in conversations
(its construction is in its docstring); :func:`split_held_out` sets a seeded
fraction of any set aside, to measure reward accuracy on pairs not trained on.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tinylm.chat.builtin import DEFAULT_SEED, builtin_conversations
from tinylm.chat.conversations import Conversation, Message, parse_conversation
from tinylm.chat.template import ChatTemplate, Rendered
from tinylm.data.hub import load_hub_records
from tinylm.errors import SettingError, TinylmError
from tinylm.untrusted_files import Record, read_json_lines

_HINT = "fix or remove that pair"
#: The fields of a preference record.
FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Preference:
    """A prompt (the conversation so far), the preferred reply and the other one."""

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    source: str = "<pair>"

    def conversation(self, reply: str) -> Conversation:
        """The prompt followed by ``reply`` as the assistant's turn."""
        return Conversation((*self.prompt, Message("assistant", reply)), self.source)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-lines record this pair reads from (the prompt as a message list)."""
        prompt = [{"role": m.role, "content": m.content} for m in self.prompt]
        return {"prompt": prompt, "chosen": self.chosen, "rejected": self.rejected}


def parse_preference(value: Any, source: str) -> Preference:
    """``value`` (a parsed record) as a :class:`Preference`, or one line saying what is wrong."""
    record = Record(value, source, _HINT)
    prompt = _prompt(record, source)
    chosen, rejected = (_text(record, key, source) for key in ("chosen", "rejected"))
    if chosen == rejected:
        raise TinylmError(
            f"{source}: 'chosen' and 'rejected' are the same reply, so nothing is preferred; "
            f"{_HINT}"
        )
    return Preference(prompt, chosen, rejected, source)


def _prompt(record: Record, source: str) -> tuple[Message, ...]:
    expected = "a string or a list of messages"
    if not record.has("prompt"):
        raise record.error("prompt", expected)
    raw = record.data["prompt"]
    if isinstance(raw, str):
        return (Message("user", _text(record, "prompt", source)),)
    if not isinstance(raw, list):
        raise record.error("prompt", expected, raw)
    messages = parse_conversation({"messages": raw}, source, require_assistant=False).messages
    if messages[-1].role != "user":
        raise TinylmError(
            f"{source}: the prompt's last turn is the {messages[-1].role}'s; it must end with "
            f"the user's turn, which the replies answer; {_HINT}"
        )
    return messages


def _text(record: Record, key: str, source: str) -> str:
    text = record.str(key)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TinylmError(f"{source}: {key!r} holds a lone surrogate (not text); {_HINT}") from None
    return text


def read_preferences(path: str | os.PathLike) -> Iterator[Preference]:
    """The pairs of a JSON-lines file, each checked (see the module docstring).

    Lines are read one at a time; a bad line raises when the read reaches it,
    naming ``path:line``.
    """
    for value, source in read_json_lines(path, "preference file", _HINT):
        yield parse_preference(value, source)


def load_hub_preferences(
    name: str, split: str = "train", **load_kwargs: Any
) -> Iterator[Preference]:
    """The pairs of a Hugging Face dataset with ``prompt``/``chosen``/``rejected`` columns.

    ``name``, ``split`` and ``load_kwargs`` are those of
    :func:`tinylm.data.hub.load_hub_records` (``load_hub_preferences("json",
    data_files="prefs.jsonl")`` reads a local file). Each column is read by that
    loader (``datasets`` caches a loaded dataset, so the three reads cost little
    more than one) and rows are checked as file lines are, named ``name[split] row N``.
    """
    columns = []
    for field in FIELDS:
        try:
            columns.append(load_hub_records(name, split, field, **load_kwargs))
        except SettingError:  # its fix (another text field) is not ours: the names are fixed
            raise TinylmError(
                f"dataset {name!r} has no {field!r} column; a preference dataset needs "
                f"{', '.join(FIELDS)} columns"
            ) from None
    return _rows(zip(*columns, strict=True), f"{name}[{split}]")


def _rows(rows: Iterable[tuple[Any, Any, Any]], label: str) -> Iterator[Preference]:
    for number, values in enumerate(rows, 1):
        yield parse_preference(dict(zip(FIELDS, values, strict=True)), f"{label} row {number}")


# -- a pair as ids ---------------------------------------------------------------------------


def render_reply(
    template: ChatTemplate, prompt: Sequence[Message], reply: str, source: str = "<pair>"
) -> Rendered:
    """The ids of ``prompt`` + ``reply``, masked to the reply's tokens and its ``<|end|>``.

    The template renders the whole conversation; the mask keeps its own rule (only
    assistant text counts) and is cut to the positions after the prompt's render
    for generation, so earlier assistant turns in the prompt do not count.
    """
    conversation = Conversation((*prompt, Message("assistant", reply)), source)
    rendered = template.render(conversation)  # an unknown character: named with ``source``
    start = len(template.render_for_generation(prompt))
    mask = [counted and i >= start for i, counted in enumerate(rendered.mask)]
    return Rendered(rendered.ids, mask, rendered.source)


def render_pair(template: ChatTemplate, pair: Preference) -> tuple[Rendered, Rendered]:
    """The chosen and rejected conversations of ``pair``, each masked to its final reply."""
    return (
        render_reply(template, pair.prompt, pair.chosen, pair.source),
        render_reply(template, pair.prompt, pair.rejected, pair.source),
    )


# -- longer than the context: the replies are cut -------------------------------------------


@dataclass(frozen=True)
class FittedPairs:
    """Pairs that fit the context; how many had their replies cut, how many were dropped."""

    pairs: list[tuple[Rendered, Rendered]]
    cut: int
    dropped: int


def fit_pairs(
    rendered: Iterable[tuple[Rendered, Rendered]], block_size: int, *, allow_empty: bool = False
) -> FittedPairs:
    """Each pair cut to ``block_size + 1`` ids, its prompt whole; pairs left with nothing dropped.

    Unlike a conversation for fine-tuning (dropped whole, see
    :func:`tinylm.chat.template.fit_to_context`), a pair keeps its use when its
    replies are cut: the prompt is whole, and the two replies are compared on
    their first tokens, as far as the context reaches (a cut reply loses its
    ``<|end|>``, so the model is not taught to stop there). A pair is dropped when
    the prompt leaves no reply token within the context, or when the cut replies
    are the same. ``block_size + 1``: inputs are ``ids[:-1]``, targets ``ids[1:]``.
    """
    limit = block_size + 1
    kept: list[tuple[Rendered, Rendered]] = []
    cut = dropped = 0
    for chosen, rejected in rendered:
        if len(chosen.ids) <= limit and len(rejected.ids) <= limit:
            kept.append((chosen, rejected))
            continue
        short = [Rendered(r.ids[:limit], r.mask[:limit], r.source) for r in (chosen, rejected)]
        if not all(any(r.mask) for r in short) or short[0].ids == short[1].ids:
            dropped += 1
        else:
            kept.append((short[0], short[1]))
            cut += 1
    if not kept and not allow_empty:
        raise TinylmError(
            f"no pair fits the context ({limit:,} tokens): in all {dropped:,} the prompt leaves "
            "no room for the replies, or the replies agree as far as it reaches; use a model "
            "with a larger block_size or shorter prompts"
        )
    return FittedPairs(kept, cut, dropped)


# -- the built-in set and the held-out split ---------------------------------------------------


def builtin_preferences(seed: int = DEFAULT_SEED) -> list[Preference]:
    """Pairs made from :func:`tinylm.chat.builtin.builtin_conversations` (offline).

    Each built-in conversation (a question about one help topic, sometimes after
    the system prompt, and that topic's first paragraph as the answer) becomes one
    pair: the prompt is the conversation before the answer, **chosen** is the true
    answer, and **rejected** is the answer of a *different* topic, drawn uniformly
    from the others by ``random.Random(seed)`` in the conversations' order. The
    preference is thus "answer the question that was asked": both replies are
    fluent reference text, so a model cannot prefer the chosen one by style alone.
    """
    conversations = builtin_conversations(seed)
    answers = sorted({c.messages[-1].content for c in conversations})
    rng = random.Random(seed)
    pairs = []
    for conversation in conversations:
        *prompt, answer = conversation.messages
        others = [a for a in answers if a != answer.content]
        rejected = others[rng.randrange(len(others))]
        pairs.append(Preference(tuple(prompt), answer.content, rejected, conversation.source))
    return pairs


def split_held_out(
    pairs: Sequence[Preference], fraction: float, seed: int = DEFAULT_SEED
) -> tuple[list[Preference], list[Preference]]:
    """``(train, held_out)``: ``round(fraction * n)`` pairs set aside, drawn by ``seed``.

    At least one pair is held out when ``fraction > 0`` and there are two or more,
    and at least one is always left to train on; the order of each part is the
    order of ``pairs``.
    """
    if not 0 <= fraction < 1:
        raise TinylmError(f"held_out must be at least 0 and below 1, got {fraction!r}")
    if not pairs:
        raise TinylmError("there are no preference pairs to train on; give a file that has some")
    count = round(fraction * len(pairs))
    if fraction > 0 and len(pairs) > 1:
        count = max(count, 1)
    count = min(count, len(pairs) - 1)
    chosen = set(random.Random(seed).sample(range(len(pairs)), count))
    train = [p for i, p in enumerate(pairs) if i not in chosen]
    held_out = [p for i, p in enumerate(pairs) if i in chosen]
    return train, held_out


# -- where pairs come from -------------------------------------------------------------------

#: The prefix of a preference data spec, and the names after it that are not files.
SPEC_PREFIX = "prefs:"
BUILTIN_SPEC = "builtin"
HUB_PREFIX = "hf:"


def preferences_from(spec: str) -> list[Preference]:
    """The pairs a data spec names, all read and checked.

    ``prefs:builtin`` is :func:`builtin_preferences`; ``prefs:hf:NAME`` the train
    split of a Hugging Face dataset (:func:`load_hub_preferences`); anything else,
    with or without the ``prefs:`` prefix, a JSON-lines file. An empty set is an
    error: there would be nothing to train on.
    """
    name = spec.removeprefix(SPEC_PREFIX)
    if name == BUILTIN_SPEC:
        pairs = builtin_preferences()
    elif name.startswith(HUB_PREFIX):
        pairs = list(load_hub_preferences(name.removeprefix(HUB_PREFIX)))
    else:
        pairs = list(read_preferences(name))
    if not pairs:
        raise TinylmError(f"{name} holds no preference pairs; give a file that has some")
    return pairs
