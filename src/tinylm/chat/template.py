"""The chat template: a conversation as token ids, and which of them the loss counts.

Four special tokens mark the turns; their ids come from the tokenizer (a base
model's tokenizer gains them with :func:`add_chat_tokens`)::

    <|system|>  <|user|>  <|assistant|>  <|end|>

The exact layout of a rendered conversation, token by token (``text`` is the
message encoded with ``encode_ordinary``, so a message that spells ``<|end|>``
is plain characters and cannot forge a turn)::

    [BOS]                              only when the tokenizer has a BOS id
    <|system|> text <|end|>            only when the first message is a system one
    <|user|> text <|end|>
    <|assistant|> text <|end|>         the reply text and its <|end|> count in the loss
    ...                                every turn, in order

Nothing separates turns but these tokens (no newlines are added). The mask has
one entry per id, ``True`` where that id is a target the loss counts: the tokens
of every assistant reply and the ``<|end|>`` that closes it, so the model learns
both what to say and when to stop. BOS, the headers and the system and user turns
are context only. For training on ``ids``, inputs are ``ids[:-1]``, targets
``ids[1:]`` and the loss mask ``mask[1:]``.

For generation, :meth:`ChatTemplate.render_for_generation` renders the
conversation so far the same way and ends with ``<|assistant|>``; the model's
reply runs until it samples ``<|end|>`` (:attr:`ChatTemplate.end_id`).

The same layout as a Hugging Face Jinja ``chat_template`` (what ``tinylm export``
writes, so transformers' ``apply_chat_template`` gives these ids) is
:func:`jinja_chat_template`.

Conversations longer than the context are dropped, whole, by
:func:`fit_to_context`, which counts them for the report: cutting one would
either lose the start of the reply the model is trained on or train it on
replies to questions it cannot see.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.chat.conversations import Conversation, Message
from tinylm.errors import TinylmError
from tinylm.tokenizers.base import Tokenizer
from tinylm.untrusted_files import Record, check_format, read_json

SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END = "<|end|>"
#: The template's special tokens, in the order a tokenizer gains them.
CHAT_TOKENS = (SYSTEM, USER, ASSISTANT, END)

_HEADERS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}

#: The header of a stored template (``chat_template.json`` in a checkpoint folder).
TEMPLATE_FORMAT = "tinylm-chat-template"
TEMPLATE_VERSION = 1
_TOKEN_ROLES = ("system", "user", "assistant", "end")


def add_chat_tokens(tokenizer: Tokenizer) -> Tokenizer:
    """``tokenizer`` with the chat tokens it lacks, at ids after all of its own.

    Ids it already had keep their meaning; grow the model to the new
    ``vocab_size`` with :func:`tinylm.model.grow_vocab.grow_vocab`.
    """
    if all(name in tokenizer.special_tokens for name in CHAT_TOKENS):
        return tokenizer
    return tokenizer.with_special_tokens(CHAT_TOKENS)


@dataclass(frozen=True)
class Rendered:
    """A conversation's ids and its loss mask (``mask[i]``: does ``ids[i]`` count as a target)."""

    ids: list[int]
    mask: list[bool]
    source: str = "<conversation>"


class ChatTemplate:
    """Renders conversations with one tokenizer that has the chat tokens."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        missing = [name for name in CHAT_TOKENS if name not in tokenizer.special_tokens]
        if missing:
            raise TinylmError(
                f"the tokenizer lacks the chat tokens {', '.join(missing)}; add them with "
                "add_chat_tokens(tokenizer) and grow the model to match"
            )
        self.tokenizer = tokenizer
        self.header_ids = {role: tokenizer.special_tokens[name] for role, name in _HEADERS.items()}
        self.end_id = tokenizer.special_tokens[END]

    def render(self, conversation: Conversation) -> Rendered:
        """The ids and loss mask of a whole conversation (layout in the module docstring)."""
        ids, mask = self._start()
        try:
            for message in conversation.messages:
                self._turn(message, ids, mask)
        except TinylmError as exc:  # an unknown character, named with its conversation
            raise TinylmError(f"{conversation.source}: {exc}") from None
        return Rendered(ids, mask, conversation.source)

    def render_for_generation(self, messages: Sequence[Message]) -> list[int]:
        """The ids of the conversation so far, ending with ``<|assistant|>``: a reply comes next."""
        ids, mask = self._start()
        for message in messages:
            self._turn(message, ids, mask)
        return [*ids, self.header_ids["assistant"]]

    def _start(self) -> tuple[list[int], list[bool]]:
        bos = self.tokenizer.bos_id
        return ([], []) if bos is None else ([bos], [False])

    def _turn(self, message: Message, ids: list[int], mask: list[bool]) -> None:
        text = self.tokenizer.encode_ordinary(message.content)
        counted = message.role == "assistant"
        ids += [self.header_ids[message.role], *text, self.end_id]
        mask += [False] + [counted] * (len(text) + 1)


# -- the template stored in a run ------------------------------------------------------------


def template_record() -> dict[str, Any]:
    """What a chat model's checkpoint stores as ``chat_template.json``.

    The layout is this module's; the record names its version and its turn
    tokens, so sampling, chat, export and serve all render a conversation the way
    the model was fine-tuned, and a later layout is refused instead of misread.
    """
    return {
        "format": TEMPLATE_FORMAT,
        "version": TEMPLATE_VERSION,
        "tokens": dict(zip(_TOKEN_ROLES, CHAT_TOKENS, strict=True)),
    }


def load_chat_template(path: str | os.PathLike | None, tokenizer: Tokenizer) -> ChatTemplate | None:
    """The template stored at ``path`` (a ``chat_template.json``), for ``tokenizer``.

    ``None`` when there is no file (a base model: it continues text). The file is
    untrusted: its header and every token name are checked against this module's
    layout, and the tokenizer must have the tokens it names.
    """
    if path is None:
        return None
    path = Path(path)
    hint = "restore the chat_template.json the model was fine-tuned with, or remove it"
    data = read_json(path, hint)
    what = "tinylm chat template"
    check_format(data, TEMPLATE_FORMAT, TEMPLATE_VERSION, path, what, hint)
    tokens = Record(data, str(path), hint).record("tokens")
    for role, name in zip(_TOKEN_ROLES, CHAT_TOKENS, strict=True):
        if tokens.str(role) != name:
            raise tokens.error(role, repr(name), tokens.str(role))
    return ChatTemplate(tokenizer)


def jinja_chat_template(has_bos: bool) -> str:
    """This module's layout as a Hugging Face Jinja ``chat_template``.

    transformers renders it to text and encodes that with every added token
    recognised and nothing else added, so the turn tokens become their ids, and
    ``{{ bos_token }}`` the BOS id, exactly where :meth:`ChatTemplate.render` puts
    them. ``has_bos``: whether the tokenizer has a BOS id (the layout starts with
    it only then). A role the layout has no header for is refused, as here. The
    text is a fixed function of ``has_bos``, so an import can recognise it.
    """
    headers = ", ".join(f"{role!r}: {name!r}" for role, name in _HEADERS.items())
    return (
        ("{{ bos_token }}" if has_bos else "")
        + f"{{% set headers = {{{headers}}} %}}"
        + "{% for message in messages %}"
        + "{% if message['role'] not in headers %}"
        + "{{ raise_exception('a tinylm chat message is from system, user or assistant') }}"
        + "{% endif %}"
        + f"{{{{ headers[message['role']] + message['content'] + {END!r} }}}}"
        + "{% endfor %}"
        + f"{{% if add_generation_prompt %}}{{{{ {ASSISTANT!r} }}}}{{% endif %}}"
    )


@dataclass(frozen=True)
class Fitted:
    """The rendered conversations that fit the context, and how many did not."""

    kept: list[Rendered]
    dropped: int
    max_tokens: int

    def summary(self) -> str:
        """One line for the user: how many were kept and dropped, and why."""
        total = len(self.kept) + self.dropped
        return (
            f"kept {len(self.kept):,} of {total:,} conversations; dropped {self.dropped:,} "
            f"longer than {self.max_tokens:,} tokens (the context + 1)"
        )


def fit_to_context(rendered: Iterable[Rendered], block_size: int) -> Fitted:
    """Keep the conversations of at most ``block_size + 1`` ids; drop and count the rest.

    ``block_size + 1`` because a training row of ``block_size`` inputs also needs
    the next id as the last target. A conversation is kept or dropped whole (the
    module docstring says why); if none fits, that is an error, not an empty set.
    """
    max_tokens = block_size + 1
    kept: list[Rendered] = []
    dropped = 0
    for item in rendered:
        if len(item.ids) <= max_tokens:
            kept.append(item)
        else:
            dropped += 1
    if not kept and not dropped:
        raise TinylmError("there are no conversations to train on; give a file that has some")
    if not kept:
        raise TinylmError(
            f"all {dropped:,} conversations are longer than the context ({max_tokens:,} "
            "tokens); use a model with a larger block_size or shorter conversations"
        )
    return Fitted(kept, dropped, max_tokens)
