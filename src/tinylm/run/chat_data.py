"""A chat fine-tune's data: ``chat:`` sources read, rendered, fitted and split.

``data`` names one conversation source with a ``chat:`` prefix:

* ``chat:builtin``  -- the built-in set from Python's help topics (offline);
* ``chat:hf:NAME``  -- a Hugging Face dataset's ``messages`` column, ``train`` split;
* ``chat:FILE``     -- a JSON-lines file of ``{"messages": [...]}`` records.

The path from conversations to batches, in order:

1. the base model's tokenizer gains the chat tokens
   (:func:`tinylm.chat.template.add_chat_tokens`; the engine grows the model to
   match with :func:`tinylm.model.grow_vocab.grow_vocab`);
2. every conversation is rendered (ids and loss mask) and those longer than the
   context dropped and counted (:func:`tinylm.chat.template.fit_to_context`); the
   count goes to ``run.json`` and to the line a run prints as it starts;
3. a seeded shuffle holds :data:`~tinylm.data.conversation_batches.VAL_FRACTION`
   of them out for the masked validation loss, by source: the built-in set's
   conversations about one topic (same answer, other question) stay on one side.

Nothing is cached: a resume renders the source again with the run's tokenizer and
refuses to continue if the conversations are not the ones the run started on
(their fingerprint is in ``run.json``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.chat.builtin import builtin_conversations
from tinylm.chat.conversations import Conversation, load_hub_conversations, read_conversations
from tinylm.chat.template import ChatTemplate, add_chat_tokens, fit_to_context, template_record
from tinylm.data.conversation_batches import (
    VAL_FRACTION,
    ConversationData,
    ConversationRows,
    split_rows,
)
from tinylm.errors import SettingError, TinylmError
from tinylm.tokenizers.base import Tokenizer

CHAT_PREFIX = "chat:"
BUILTIN = "builtin"
HUB_PREFIX = "hf:"


def is_chat_data(specs: Sequence[str]) -> bool:
    """Whether ``data`` names a conversation source; one ``chat:`` source, alone, or none."""
    chat = [spec for spec in specs if spec.startswith(CHAT_PREFIX)]
    if chat and len(specs) > 1:
        raise SettingError(
            f"chat data is one source, alone; give only {chat[0]!r} (not {len(specs)} data specs)",
            setting="data",
            reason="chat_with_other_data",
            spec=chat[0],
        )
    return bool(chat)


def read_chat_source(spec: str) -> list[Conversation]:
    """The conversations ``spec`` names (``chat:builtin``, ``chat:hf:NAME`` or ``chat:FILE``)."""
    source = spec[len(CHAT_PREFIX) :]
    if not source:
        raise SettingError(
            f"{spec!r} names no conversations; give chat:builtin, chat:hf:NAME or chat:FILE.jsonl",
            setting="data",
        )
    if source == BUILTIN:
        return builtin_conversations()
    if source.startswith(HUB_PREFIX):
        return list(load_hub_conversations(source[len(HUB_PREFIX) :]))
    return list(read_conversations(Path(source)))


@dataclass(frozen=True)
class ChatData(ConversationData):
    """The split conversations, the tokenizer with the chat tokens, and what ``run.json`` says."""

    tokenizer: Tokenizer | None = None
    info: dict[str, Any] | None = None


def chat_training_data(
    specs: Sequence[str], base_tokenizer: Tokenizer, block_size: int, seed: int
) -> ChatData:
    """The fine-tune's data, from the one ``chat:`` spec in ``specs`` (module docstring)."""
    conversations = read_chat_source(specs[0])
    tokenizer = add_chat_tokens(base_tokenizer)
    template = ChatTemplate(tokenizer)
    fitted = fit_to_context((template.render(c) for c in conversations), block_size)
    rows = ConversationRows([r.ids for r in fitted.kept], [r.mask for r in fitted.kept])
    # one side per source: the built-in set's topics are asked several ways, same answer
    train, val = split_rows(rows, seed, groups=[r.source for r in fitted.kept])
    chat = {
        "conversations": len(fitted.kept) + fitted.dropped,
        "kept": len(fitted.kept),
        "dropped": fitted.dropped,
        "max_tokens": fitted.max_tokens,
        "fitted": fitted.summary(),
        "train": len(train),
        "val": len(val),
        "val_fraction": VAL_FRACTION,
        "split_seed": seed,
        "counted_val_tokens": val.counted_targets(),
        "fingerprint": rows_fingerprint(rows),
    }
    info = {"data": list(specs), "tokenizer": None, "chat": chat}
    return ChatData(train, val, template_record(), tokenizer, info)


def resumed_chat_data(run: dict[str, Any], tokenizer: Tokenizer, out_dir: Path) -> ChatData:
    """The data of the chat run ``run`` (its ``run.json``), rendered again and checked unchanged."""
    stored = run["chat"]
    seed = stored.get("split_seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TinylmError(
            f"{out_dir}/run.json: chat.split_seed is {seed!r}, not an integer; restore the file"
        )
    data = chat_training_data(run["data"], tokenizer, int(run["model"]["block_size"]), seed)
    if data.info["chat"]["fingerprint"] != stored.get("fingerprint"):
        raise TinylmError(
            f"the conversations of {run['data'][0]} are not the ones the run in {out_dir} "
            "started on (the file changed); restore them, or fine-tune anew into another folder"
        )
    return data


def rows_fingerprint(rows: ConversationRows) -> str:
    """A short hash of every id and mask entry: equal iff the rendered conversations are."""
    text = json.dumps([rows.ids, [[int(m) for m in mask] for mask in rows.masks]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
