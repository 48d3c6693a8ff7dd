"""Conversations: the ``{"messages": [...]}`` records chat data comes in, checked line by line.

The convention of the OpenAI API and Hugging Face chat datasets: one JSON object per
line, whose ``messages`` list holds ``{"role": ..., "content": ...}`` objects::

    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "What is 2 + 2?"},
                  {"role": "assistant", "content": "4."}]}

Every line is untrusted (a download, a hand edit, a file cut short), so each one is
checked before it is used, and a bad one stops the read with one line naming
``file:line`` and what is wrong: not UTF-8, not JSON or nested absurdly deep (parsed
by :func:`tinylm.untrusted_files.parse_json`), no ``messages`` list, an empty one, a
role other than ``system``/``user``/``assistant``, content that is not a string or
holds a lone surrogate, a system message after the first, or no assistant turn (a
conversation with nothing to learn from). Other keys, in the record or a message,
are ignored, as Hugging Face datasets carry ids and metadata beside the messages.
Blank lines are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tinylm.data.hub import load_hub_records
from tinylm.errors import TinylmError
from tinylm.untrusted_files import Record, read_json_lines

#: The roles a message may have, in the words of the OpenAI / Hugging Face convention.
ROLES = ("system", "user", "assistant")

_HINT = "fix or remove that conversation"


@dataclass(frozen=True)
class Message:
    """One turn: who speaks (``system``, ``user`` or ``assistant``) and what they say."""

    role: str
    content: str


@dataclass(frozen=True)
class Conversation:
    """The messages of one conversation, and where it came from (``file:line``)."""

    messages: tuple[Message, ...]
    source: str = "<conversation>"

    def to_dict(self) -> dict[str, Any]:
        """The JSON-lines record this conversation reads from."""
        return {"messages": [{"role": m.role, "content": m.content} for m in self.messages]}


def parse_conversation(value: Any, source: str, *, require_assistant: bool = True) -> Conversation:
    """``value`` (a parsed record) as a :class:`Conversation`, or one line saying what is wrong.

    ``require_assistant=False`` accepts a conversation waiting for a reply (for
    generation), which training has no use for.
    """
    record = Record(value, source, _HINT)
    items = record.list("messages")
    if not items:
        raise TinylmError(f"{source}: 'messages' is empty; {_HINT}")
    messages = tuple(_message(item, f"{source}: message {n}") for n, item in enumerate(items, 1))
    for n, message in enumerate(messages[1:], 2):
        if message.role == "system":
            raise TinylmError(
                f"{source}: message {n} is a system message; only the first may be, {_HINT}"
            )
    if require_assistant and not any(m.role == "assistant" for m in messages):
        raise TinylmError(f"{source}: no assistant message, so nothing in it is learned; {_HINT}")
    return Conversation(messages, source)


def _message(value: Any, source: str) -> Message:
    record = Record(value, source, _HINT)
    role = record.str("role")
    if role not in ROLES:
        raise record.error("role", f"one of {', '.join(ROLES)}", role)
    content = record.str("content")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise TinylmError(
            f"{source}: 'content' holds a lone surrogate (not text); {_HINT}"
        ) from None
    return Message(role, content)


def read_conversations(path: str | os.PathLike) -> Iterator[Conversation]:
    """The conversations of a JSON-lines file, each checked (see the module docstring).

    Lines are read one at a time, so a large file streams; a bad line raises when
    the read reaches it, naming ``path:line``.
    """
    for value, source in read_json_lines(path, "conversation file", _HINT):
        yield parse_conversation(value, source)


def load_hub_conversations(
    name: str,
    split: str = "train",
    messages_field: str = "messages",
    **load_kwargs: Any,
) -> Iterator[Conversation]:
    """The conversations of a Hugging Face dataset (or local files through ``datasets``).

    ``name``, ``split`` and ``load_kwargs`` are those of
    :func:`tinylm.data.hub.load_hub_dataset` (``load_hub_conversations("json",
    data_files="chat.jsonl")`` reads a local file); ``messages_field`` names the
    column holding each row's message list. Rows are checked as file lines are,
    and named ``name[split] row N``.
    """
    rows = load_hub_records(
        name, split, messages_field, field_setting="messages_field", **load_kwargs
    )
    return _rows(rows, f"{name}[{split}]")


def _rows(values: Iterable[Any], label: str) -> Iterator[Conversation]:
    for number, messages in enumerate(values, 1):
        yield parse_conversation({"messages": messages}, f"{label} row {number}")
