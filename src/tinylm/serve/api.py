"""The inspector's JSON API: one method per endpoint, plain dicts in and out.

Each method reads its request through :class:`~tinylm.serve.request.Fields`
(types and bounds checked), asks the library for the numbers —
``tinylm.inspect`` for tokens, next-token probabilities and attention weights,
the run's ``DecodeEngine`` for sampling, a ``ChatSession`` for a chat reply,
``read_metrics`` for training curves — and
returns JSON-ready data. Nothing here knows about HTTP (:mod:`tinylm.serve.server`
carries the dicts), so the handlers can be called and tested directly.

Every request is bounded by :class:`Limits`: the prompt's length, the tokens
to generate and the seconds a generation may take, the size of an attention
answer. A user mistake the library reports (:class:`~tinylm.errors.TinylmError`:
an unencodable character, a prompt longer than the context) becomes a 400 with
the library's own message.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tinylm.check_values import MAX_SEED
from tinylm.errors import TinylmError
from tinylm.inference.chat_session import ChatSession, ChatSettings, Reply
from tinylm.inference.loading import no_chat_template
from tinylm.inference.sampling import prompt_ids, sampleable_ids
from tinylm.inspect.attention import attention_maps
from tinylm.inspect.lens import logit_lens
from tinylm.inspect.next_token import next_token_distribution
from tinylm.inspect.tokens import encode_shown, token_pieces
from tinylm.run_layout import METRICS_FILE
from tinylm.serve.recording import RecordingDecoder, token_probability
from tinylm.serve.request import ApiError, Fields
from tinylm.serve.served import ServedRun
from tinylm.tokenizers.base import Tokenizer
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.metrics import read_metrics


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; the page reads them to set its controls' ranges."""

    max_prompt_chars: int = 4000
    max_new_tokens: int = 500
    max_top_k: int = 100  # bars in the next-token view
    max_lens_k: int = 10  # guesses per position and layer in the logit lens
    max_attention_values: int = 2_000_000  # layers x heads x (T (T + 1) / 2) weights
    generate_seconds: float = 60.0
    max_temperature: float = 5.0
    max_curve_points: int = 2000  # per curve; longer runs are thinned evenly
    max_messages: int = 200  # in one chat request's conversation


@dataclass(frozen=True)
class GenerateRequest:
    """A checked generation request (:meth:`Api.start_generation`)."""

    run: ServedRun
    prompt_ids: list[int]
    max_tokens: int
    tokens: Iterator[int]  # the engine's generate: arguments checked, nothing run yet
    decoder: RecordingDecoder  # the run's engine, keeping each step's logits


@dataclass(frozen=True)
class ChatRequest:
    """A checked chat request (:meth:`Api.start_chat`): the reply, not yet written."""

    run: ServedRun
    reply: Reply  # ChatSession.send's answer: history fitted, notices made, nothing run yet
    decoder: RecordingDecoder


class Api:
    """The handlers, over runs loaded once and comparison tokenizers chosen at start."""

    def __init__(
        self,
        runs: Mapping[str, ServedRun],
        tokenizers: Mapping[str, Tokenizer] | None = None,
        limits: Limits | None = None,
    ) -> None:
        if not runs:
            raise TinylmError("the inspector needs at least one run to serve")
        self.runs = dict(runs)
        self.tokenizers = dict(tokenizers or {})
        self.limits = limits or Limits()

    # -- GET -------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Every run (config, parameters, tokenizer), the comparison tokenizers, the limits."""
        return {
            "runs": [_run_summary(run) for run in self.runs.values()],
            "tokenizers": [
                {"name": name, "vocab_size": tok.vocab_size}
                for name, tok in self.tokenizers.items()
            ],
            "limits": asdict(self.limits),
        }

    def metrics(self, query: Mapping[str, str]) -> dict[str, Any]:
        """A run's loss curves from its metrics.jsonl, read afresh (the run may be training).

        ``val_bpb`` (bits per byte) is empty for runs recorded before it was measured.
        """
        run = self._run(Fields(dict(query)))
        records = read_metrics(run.run_dir / METRICS_FILE)
        curves = {
            "train": _curve(records, "loss"),
            "val": _curve(records, "val_loss"),
            "val_bpb": _curve(records, "val_bpb"),
        }
        limit = self.limits.max_curve_points
        return {"run": run.name, **{k: _thin(v, limit) for k, v in curves.items()}}

    # -- POST ------------------------------------------------------------------------------

    def tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        """The text split by the run's tokenizer and by each comparison tokenizer asked for."""
        fields = Fields(body)
        run = self._run(fields)
        text = fields.text("text", self.limits.max_prompt_chars, allow_empty=False)
        compare = fields.choices("compare", self.tokenizers)
        # With several runs each run's tokenizer is also a comparison: never the run's twice.
        compare = [name for name in compare if self.tokenizers[name] is not run.tokenizer]
        rows = [_tokenized(f"{run.name} (run)", run.tokenizer, text)]
        rows += [_tokenized(name, self.tokenizers[name], text) for name in compare]
        return {"text": text, "chars": len(text), "rows": rows}

    def next_token(self, body: dict[str, Any]) -> dict[str, Any]:
        """The ``k`` most likely next tokens and their probabilities at a temperature."""
        fields = Fields(body)
        run = self._run(fields)
        text = fields.text("text", self.limits.max_prompt_chars, allow_empty=False)
        temperature = fields.number("temperature", 1.0, 0.0, self.limits.max_temperature)
        k = fields.integer("k", 10, 1, self.limits.max_top_k)
        with _user_errors(), run.inference() as loaded:
            dist = next_token_distribution(loaded, text, k=k, temperature=temperature)
        top = [
            {"id": int(i), "text": piece, "prob": float(p), "prob_t1": float(p1)}
            for i, piece, p, p1 in zip(
                dist.ids, dist.pieces, dist.probs, dist.probs_t1, strict=True
            )
        ]
        context = _tokens(run.tokenizer, dist.prompt_ids)
        rest = max(0.0, 1.0 - sum(t["prob"] for t in top))
        return {"temperature": temperature, "context": context, "top": top, "rest": rest}

    def attention(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every layer's and head's attention weights over the prompt (BOS included).

        Row ``i`` holds only keys ``0..i``: the rest is the causal mask's zeros,
        so leaving it out halves the answer without losing anything.
        """
        fields = Fields(body)
        run = self._run(fields)
        text = fields.text("text", self.limits.max_prompt_chars, allow_empty=False)
        config = run.loaded.config
        with _user_errors():
            n_tokens = len(run.loaded.encode(text))
        values = config.n_layer * config.n_head * n_tokens * (n_tokens + 1) // 2
        if values > self.limits.max_attention_values:
            raise ApiError(
                400,
                f"the attention of {n_tokens} tokens over {config.n_layer} layers x "
                f"{config.n_head} heads is {values:,} weights, more than the limit of "
                f"{self.limits.max_attention_values:,}; shorten the prompt",
            )
        with _user_errors(), run.inference() as loaded:
            maps = attention_maps(loaded, text)
        weights = [
            [
                [[round(float(w), 6) for w in row[: i + 1]] for i, row in enumerate(head)]
                for head in layer
            ]
            for layer in maps.weights
        ]
        return {
            "tokens": _tokens(run.tokenizer, maps.ids),
            "n_layer": len(maps.layers),
            "n_head": len(maps.heads),
            "weights": weights,
        }

    def lens(self, body: dict[str, Any]) -> dict[str, Any]:
        """The logit lens: the top ``k`` next-token guesses at every position, after every layer.

        ``top[stage][position]`` lists ``{id, text, prob}``; stage 0 reads out the
        embeddings, the last stage is the model's own prediction.
        """
        fields = Fields(body)
        run = self._run(fields)
        text = fields.text("text", self.limits.max_prompt_chars, allow_empty=False)
        k = fields.integer("k", 3, 1, self.limits.max_lens_k)
        with _user_errors(), run.inference() as loaded:
            lens = logit_lens(loaded, text, k=k)
        top = [
            [
                [
                    {"id": int(i), "text": piece, "prob": float(p)}
                    for i, piece, p in zip(ids, pieces, probs, strict=True)
                ]
                for ids, pieces, probs in zip(stage_ids, stage_pieces, stage_probs, strict=True)
            ]
            for stage_ids, stage_pieces, stage_probs in zip(
                lens.top_ids, lens.top_pieces, lens.top_probs, strict=True
            )
        ]
        return {"tokens": _tokens(run.tokenizer, lens.ids), "stages": lens.stages, "top": top}

    def start_generation(self, body: dict[str, Any]) -> GenerateRequest:
        """Check a generation request completely, before any answer is sent."""
        fields = Fields(body)
        run = self._run(fields)
        text = fields.text("text", self.limits.max_prompt_chars)
        limits = self.limits
        vocab_size = run.loaded.config.vocab_size
        sampling = {
            "temperature": fields.number("temperature", 0.8, 0.0, limits.max_temperature),
            "top_k": fields.integer("top_k", None, 1, vocab_size),
            "top_p": None if body.get("top_p") is None else fields.number("top_p", 1.0, 0.01, 1.0),
            "seed": fields.integer("seed", None, 0, 2**63 - 1),
        }
        max_tokens = fields.integer("max_tokens", 100, 1, limits.max_new_tokens)
        with _user_errors():
            ids = prompt_ids(run.tokenizer, text)[-run.loaded.config.block_size :]
            allowed = sampleable_ids(run.engine, run.tokenizer)  # never a gap id
            decoder = RecordingDecoder(run.engine)
            tokens = decoder.generate(ids, max_tokens, allowed_ids=allowed, **sampling)
        return GenerateRequest(run, ids, max_tokens, tokens, decoder)

    def generate(self, request: GenerateRequest) -> Iterator[dict[str, Any]]:
        """Events for a stream: each token as it is sampled, then ``done``.

        A token event carries the token, its text and the probability the model
        gave it (at temperature 1: how sure the model itself was, whatever the
        sampling settings), read from the logits of the very forward that sampled
        the token (:func:`_sampled_logits`): a second forward per token, over the
        whole window without the KV cache, made a generation in the server many
        times slower than ``GPT.generate`` alone. As in ``tinylm sample``, an end-of-document token
        ends the stream, except as the very first token, where it is kept as
        context (see ``tinylm.inference.sampling.stream_text``).
        """
        run, limits = request.run, self.limits
        tokenizer = run.tokenizer
        tokens = request.tokens
        started = time.monotonic()
        produced, reason = [], "length"
        try:
            for _ in range(request.max_tokens):
                if time.monotonic() - started > limits.generate_seconds:
                    reason = "time"
                    break
                with run.inference():
                    token = next(tokens, None)
                seen = request.decoder.take()
                if token is None:
                    break
                prob = token_probability(seen[-1], token)
                if token == tokenizer.eos_id:
                    if produced:
                        reason = "end of document"
                        break
                    continue
                produced.append(token)
                piece = token_pieces(tokenizer, [token])[0]
                yield {"type": "token", "id": token, "text": piece, "prob": prob}
        finally:
            tokens.close()
        yield {
            "type": "done",
            "reason": reason,
            "tokens": len(produced),
            "text": tokenizer.decode(produced),
            "seconds": round(time.monotonic() - started, 3),
        }

    def start_chat(self, body: dict[str, Any]) -> ChatRequest:
        """Check a chat request completely, and fit its conversation, before any answer is sent.

        The page keeps the conversation and sends all of it each time (``messages``,
        ending with the user's new one; ``system`` apart): the server keeps nothing
        between requests. The reply is a :class:`ChatSession`'s, with the settings
        asked for, so it equals what ``tinylm chat`` writes. Its seed is the ``n``-th
        reply's seed (``seed + n``, ``n`` the replies already in the conversation),
        as in a ``tinylm chat --seed`` session that had the same conversation.
        """
        fields = Fields(body)
        run = self._run(fields)
        limits = self.limits
        if run.template is None:
            raise ApiError(400, f"run {no_chat_template(run.run_dir)}")
        messages = fields.messages("messages", limits.max_prompt_chars, limits.max_messages)
        system = fields.text("system", limits.max_prompt_chars)
        settings = {
            "temperature": fields.number("temperature", 0.7, 0.0, limits.max_temperature),
            "top_k": fields.integer("top_k", None, 1, run.loaded.config.vocab_size),
            "top_p": None if body.get("top_p") is None else fields.number("top_p", 1.0, 0.01, 1.0),
            "max_tokens": fields.integer(
                "max_tokens", min(256, limits.max_new_tokens), 1, limits.max_new_tokens
            ),
            "seed": fields.integer("seed", None, 0, MAX_SEED),
        }
        decoder = RecordingDecoder(run.engine)
        with _user_errors():
            session = ChatSession(
                decoder,  # the run's engine, its logits kept
                run.tokenizer,
                run.template,
                system=system,
                settings=ChatSettings(**settings),
            )
            session.history = messages[:-1]
            session.replies = sum(m.role == "assistant" for m in session.history)
            reply = session.send(messages[-1].content)
        return ChatRequest(run, reply, decoder)

    def chat(self, request: ChatRequest) -> Iterator[dict[str, Any]]:
        """Events for a stream: the session's notices, each reply token as it is written, ``done``.

        A token event is the generate stream's (its id, its text, the probability
        the model gave it at temperature 1). ``done`` carries the whole reply's
        ``text`` (what the page adds to the conversation) and why it ended:
        ``end`` (the template's end token, or end of document), ``length``
        (``max_tokens``), ``time`` (the limit on a generation's seconds).
        """
        run, reply, decoder = request.run, request.reply, request.decoder
        started = time.monotonic()
        for notice in reply.notices:
            yield {"type": "notice", "text": notice}
        reason, shown = None, 0
        try:
            while True:
                if time.monotonic() - started > self.limits.generate_seconds:
                    reason = "time"
                    break
                with run.inference():
                    piece = next(reply, None)
                rows = decoder.take()  # one per step: a step that sampled the end token too
                for token, row in zip(reply.ids[shown:], rows, strict=False):
                    text = token_pieces(run.tokenizer, [token])[0]
                    prob = token_probability(row, token)
                    yield {"type": "token", "id": token, "text": text, "prob": prob}
                shown = len(reply.ids)
                if piece is None:
                    break
        finally:
            reply.close()  # a stopped stream: what was written stays, as in tinylm chat
        yield {
            "type": "done",
            "reason": reason or reply.finish_reason,
            "tokens": len(reply.ids),
            "text": reply.text,
            "seconds": round(time.monotonic() - started, 3),
        }

    # -- shared ----------------------------------------------------------------------------

    def _run(self, fields: Fields) -> ServedRun:
        default = next(iter(self.runs)) if len(self.runs) == 1 else None
        return self.runs[fields.choice("run", self.runs, default)]


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """The library's user errors (bad text for this tokenizer, too long) as HTTP 400."""
    try:
        yield
    except TinylmError as exc:
        raise ApiError(400, str(exc)) from None


def _tokens(tokenizer: Tokenizer, ids: list[int]) -> list[dict[str, Any]]:
    """Each token's id, text (partial characters as ``\\xNN``) and bytes in hex."""
    pieces = token_pieces(tokenizer, ids)
    decode_bytes = getattr(tokenizer, "decode_bytes", None)
    out = []
    for i, piece in zip(ids, pieces, strict=True):
        token = {"id": int(i), "text": piece}
        if decode_bytes is not None:
            token["bytes"] = decode_bytes([i]).hex(" ")
        out.append(token)
    return out


def _tokenized(name: str, tokenizer: Tokenizer, text: str) -> dict[str, Any]:
    """One tokenizer's row; text it cannot encode is that row's error, not the request's."""
    row: dict[str, Any] = {"name": name, "vocab_size": tokenizer.vocab_size, "tokens": []}
    try:
        row["tokens"] = _tokens(tokenizer, encode_shown(tokenizer, text))
    except TinylmError as exc:
        row["error"] = f"cannot encode this text: {exc}"
    return row


def _run_summary(run: ServedRun) -> dict[str, Any]:
    model = run.loaded.model
    details = {k: v for k, v in run.info.items() if k not in ("model", "train")}
    return {
        "name": run.name,
        "path": str(run.run_dir),
        "step": run.meta.step,
        "checkpoint_metrics": run.meta.metrics,
        "model": run.meta.model_config or {},
        "train": run.meta.train_config or run.info.get("train") or {},
        "run": details,
        "params": model.param_counts(),
        "tokenizer": {
            "kind": type(run.tokenizer).__name__,
            "vocab_size": run.tokenizer.vocab_size,
            "fingerprint": run.tokenizer.fingerprint(),
            # what a loss is per: the training view charts each unit apart
            "loss_unit": "character" if isinstance(run.tokenizer, CharTokenizer) else "token",
        },
        "default_prompt": run.default_prompt,
        "chat": run.template is not None,  # fine-tuned on conversations: the chat view works
        "weights": run.engine.weights,  # what the Generate and Chat views' engine reads
    }


def _curve(records: list[dict[str, Any]], key: str) -> list[list[float]]:
    """``[step, value]`` pairs of the records that measured ``key`` (finite numbers only)."""
    points = []
    for record in records:
        step, value = record.get("step"), record.get(key)
        if _finite(step) and _finite(value):
            points.append([step, value])
    return points


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _thin(points: list[list[float]], limit: int) -> list[list[float]]:
    """At most ``limit`` points, evenly spaced, the last always kept."""
    if len(points) <= limit:
        return points
    stride = -(-len(points) // limit)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
