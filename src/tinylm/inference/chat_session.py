"""A conversation with a chat model: the history, the settings, and replies as they are written.

:class:`ChatSession` is what ``tinylm chat`` (and a chat view) drives; it prints
nothing and reads no input. It holds:

* the **system prompt** (optional), always the first message shown to the model;
* the **history**: the user's messages and the model's replies, in order;
* the **settings** (:class:`ChatSettings`): temperature, top-k, top-p, the most
  tokens a reply may have, and a seed.

:meth:`ChatSession.send` adds the user's message, renders the conversation with
the model's template (tinylm's :class:`~tinylm.chat.template.ChatTemplate`, or a
Hugging Face folder's :class:`~tinylm.chat.hf_template.HFChatTemplate`: anything
with ``render_for_generation`` and ``end_id``) and returns a :class:`Reply`, an
iterator of text pieces as the model writes them, token by token, on a
``DecodeEngine`` (its weight format, its KV cache). A reply ends at the
template's end token, at the tokenizer's end-of-document token, or after
``max_tokens`` tokens.

**The context.** The model sees at most ``block_size`` tokens, and a reply needs
room: the rendered conversation is kept to ``block_size - min(max_tokens,
block_size // 2)`` tokens. When it is longer, the oldest *turns* are dropped whole
(a user message and the replies after it), never the system prompt nor the new
message, and the reply carries a notice saying so (:attr:`Reply.notices`). A
message that does not fit even alone is refused, and the history is unchanged.

**Interrupting.** Closing a reply early (``reply.close()``, or a
``KeyboardInterrupt`` while it is written) keeps the text written so far in the
history, as the model's reply: the conversation the model sees next is the one
the user saw on the screen.

**Seeds.** With a seed ``S``, the ``n``-th reply (from 0) samples with seed
``S + n``, so a scripted conversation is reproduced exactly, without every reply
drawing the same random numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from tinylm.chat.conversations import Message
from tinylm.check_values import MAX_SEED, check_int, check_number, check_seed, is_number, shown
from tinylm.errors import SettingError, TinylmError
from tinylm.inference.engine import DecodeEngine
from tinylm.inference.sampling import sampleable_ids
from tinylm.tokenizers.base import Tokenizer


class ChatTemplateLike(Protocol):
    """What a session needs of a template: the ids to generate from, and the reply's end id."""

    end_id: int

    def render_for_generation(self, messages: Sequence[Message]) -> list[int]: ...


@dataclass(frozen=True)
class ChatSettings:
    """How replies are sampled; checked when made, so a bad value never reaches a reply."""

    temperature: float = 0.7
    top_k: int | None = None
    top_p: float | None = None
    max_tokens: int = 256
    seed: int | None = None

    def __post_init__(self) -> None:
        check_number("temperature", self.temperature)
        check_int("top_k", self.top_k, 1, allow_none=True)
        if self.top_p is not None and not (is_number(self.top_p) and 0 < self.top_p <= 1):
            raise TinylmError(f"top_p must be in (0, 1], got {shown(self.top_p)}")
        check_int("max_tokens", self.max_tokens, 1)
        check_seed("seed", self.seed, allow_none=True)


class ChatSession:
    """A conversation with one model (see the module docstring)."""

    def __init__(
        self,
        engine: DecodeEngine,
        tokenizer: Tokenizer,
        template: ChatTemplateLike,
        *,
        system: str | None = None,
        settings: ChatSettings | None = None,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.template = template
        self.system = system or None
        self.settings = settings or ChatSettings()
        self.history: list[Message] = []
        self.replies = 0  # how many replies were sampled: the next one's seed offset
        self._allowed = sampleable_ids(engine, tokenizer)
        stops = {template.end_id}
        if tokenizer.eos_id is not None:
            stops.add(tokenizer.eos_id)
        self._stops = frozenset(stops)
        self._open: Reply | None = None

    # -- what a user changes -------------------------------------------------------

    def reset(self) -> None:
        """Forget the history (the system prompt and settings stay)."""
        self._close_open_reply()
        self.history.clear()

    def set_system(self, text: str | None) -> None:
        """A new system prompt (``None`` or empty: none); the history stays."""
        self.system = text or None

    def update(self, **changes) -> ChatSettings:
        """New settings with ``changes`` applied (checked; on an error nothing changes)."""
        self.settings = replace(self.settings, **changes)
        return self.settings

    def messages(self) -> list[Message]:
        """Everything the model is shown: the system prompt, then the history."""
        head = [] if self.system is None else [Message("system", self.system)]
        return head + self.history

    # -- replies -------------------------------------------------------------------

    def send(self, text: str) -> Reply:
        """Add the user's ``text`` and return the model's reply, to iterate for its pieces.

        Any reply still open is closed first (and kept, as written so far).
        """
        self._close_open_reply()
        history = [*self.history, Message("user", text)]
        try:
            history, dropped, prompt = self._fit(history)
        except SettingError as exc:  # the tokenizer's advice (retrain it) is no help here
            if exc.setting != "unknown":
                raise
            what = str(exc).split(" at position")[0]
            raise TinylmError(
                f"the model's tokenizer cannot encode the {what} (it was not in its training "
                "text); write the message without it"
            ) from None
        self.history = history
        notices = []
        if dropped:
            turns = "turn" if dropped == 1 else "turns"
            notices.append(
                f"dropped the oldest {dropped} {turns} of the conversation to fit the model's "
                f"context of {self.engine.config.block_size:,} tokens"
            )
        seed = self.settings.seed
        if seed is not None:
            seed = (seed + self.replies) % (MAX_SEED + 1)
        self.replies += 1
        self._open = Reply(self, prompt, notices, seed)
        return self._open

    def prompt_budget(self) -> int:
        """The most tokens of conversation shown to the model: the context less room for a reply."""
        block = self.engine.config.block_size
        return block - min(self.settings.max_tokens, block // 2)

    def _fit(self, history: list[Message]) -> tuple[list[Message], int, list[int]]:
        """``history`` without its oldest turns until it fits; how many went; its ids."""
        budget = self.prompt_budget()
        dropped = 0
        while True:
            head = [] if self.system is None else [Message("system", self.system)]
            ids = self.template.render_for_generation(head + history)
            if len(ids) <= budget:
                return history, dropped, ids
            if len(history) == 1:  # only the new message is left
                what = "the system prompt and your message" if self.system else "your message"
                raise TinylmError(
                    f"{what} take {len(ids):,} tokens, but the model shows at most {budget:,} "
                    f"(its context of {self.engine.config.block_size:,} less room for a reply); "
                    "write a shorter message"
                )
            history = _without_first_turn(history)
            dropped += 1

    def _close_open_reply(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None

    def _sample(self, prompt: list[int], seed: int | None) -> Iterator[int]:
        s = self.settings
        return self.engine.generate(
            prompt,
            s.max_tokens,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            stop_ids=self._stops,
            seed=seed,
            allowed_ids=self._allowed,
        )


def _without_first_turn(history: list[Message]) -> list[Message]:
    """``history`` less its first turn: its first message and the replies before the next."""
    rest = history[1:]
    while rest and rest[0].role != "user":
        rest = rest[1:]
    return rest


class Reply:
    """The model's reply, as text pieces (iterate it); then its whole ``text`` and why it ended.

    ``finish_reason`` is ``"end"`` (the model ended it), ``"length"`` (``max_tokens``
    reached), ``"interrupted"`` (closed early) or ``None`` while it is written.
    ``notices``: what the session did to fit the context, for the user to see.
    """

    def __init__(
        self, session: ChatSession, prompt: list[int], notices: list[str], seed: int | None
    ) -> None:
        self.session = session
        self.prompt = prompt
        self.notices = notices
        self.ids: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None
        self._seed = seed
        self._pieces = self._stream()

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop the reply here; what was written so far stays in the history."""
        self._pieces.close()
        self._commit("interrupted")

    def _stream(self) -> Iterator[str]:
        """Pieces of text as tokens arrive (a cut UTF-8 character waits for its rest)."""
        decode = self.session.tokenizer.decode
        emitted = 0
        try:
            for token in self.session._sample(self.prompt, self._seed):
                self.ids.append(token)
                text = decode(self.ids)
                if text.endswith("\ufffd"):
                    continue
                yield text[emitted:]
                emitted = len(text)
            text = decode(self.ids)
            if len(text) > emitted:
                yield text[emitted:]
            full = len(self.ids) >= self.session.settings.max_tokens
            self._commit("length" if full else "end")
        finally:  # closed or interrupted: keep what was written
            self._commit("interrupted")

    def _commit(self, reason: str) -> None:
        """Put the reply into the history, once."""
        if self.finish_reason is not None:
            return
        self.finish_reason = reason
        self.text = self.session.tokenizer.decode(self.ids)
        self.session.history.append(Message("assistant", self.text))
        if self.session._open is self:
            self.session._open = None
