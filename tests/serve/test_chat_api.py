"""The chat endpoint: a ChatSession's reply, streamed with each token's probability.

The model is tests/inference/chat_model.py's, trained until greedy decoding writes
known replies; the references are a ``ChatSession`` over a fresh ``DecodeEngine``
(what ``tinylm chat`` runs) and the model's own forward pass for the probabilities.
"""

from __future__ import annotations

import json

import pytest
import torch

from tinylm.chat.conversations import Message
from tinylm.inference.chat_session import ChatSession, ChatSettings
from tinylm.inference.engine import DecodeEngine

from .conftest import LIMITS
from .test_api import request

TURNS = [
    (None, "hi", "hello there!"),
    (None, "2+2?", "four."),
    ("be brief.", "hi", "hey."),
    (None, "Über café?", "ja, café ✓"),
]  # tests/inference/chat_model.py's: what the model learned to answer


def chat(server, messages, **settings):
    body = {"run": "chat", "messages": messages, **settings}
    return request(server, "/api/chat", body)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def reference_session(api, **settings) -> ChatSession:
    run = api.runs["chat"]
    system = settings.pop("system", None)
    engine = DecodeEngine(run.loaded.model)
    chosen = ChatSettings(**settings)
    return ChatSession(engine, run.tokenizer, run.template, system=system, settings=chosen)


@pytest.mark.parametrize(("system", "message", "reply"), TURNS)
def test_a_greedy_reply_streams_the_known_reply_token_by_token(
    chat_server, chat_api, system, message, reply
):
    settings = {"temperature": 0, "max_tokens": 20}
    if system:
        settings["system"] = system
    status, events = chat(chat_server, [user(message)], **settings)
    assert status == 200
    tokens, done = events[:-1], events[-1]
    assert "".join(e["text"] for e in tokens) == reply == done["text"]
    assert done["type"] == "done" and done["reason"] == "end"
    session = reference_session(chat_api, **settings)
    expected = session.send(message)
    assert "".join(expected) == reply
    assert [e["id"] for e in tokens] == expected.ids and done["tokens"] == len(expected.ids)


def test_a_sampled_reply_equals_the_sessions_with_the_same_settings_and_seed(chat_server, chat_api):
    settings = {"temperature": 1.6, "top_k": 6, "top_p": 0.95, "max_tokens": 12, "seed": 11}
    session = reference_session(chat_api, **settings)
    first = session.send("hi")
    list(first)
    second = session.send("2+2?")  # sampled with seed 12: the session's second reply
    list(second)
    conversation = [user("hi"), assistant(first.text), user("2+2?")]
    status, events = chat(chat_server, conversation, **settings)
    assert status == 200
    assert [e["id"] for e in events[:-1]] == second.ids
    assert events[-1]["text"] == second.text


def test_each_token_carries_its_probability_under_the_models_own_distribution(
    chat_server, chat_api
):
    settings = {"temperature": 1.2, "max_tokens": 15, "seed": 3}
    status, events = chat(chat_server, [user("hi")], **settings)
    tokens = events[:-1]
    assert status == 200 and tokens
    run = chat_api.runs["chat"]
    context = run.template.render_for_generation([Message("user", "hi")])
    model = run.loaded.model
    with torch.no_grad():
        for event in tokens:
            assert 0 < event["prob"] <= 1
            logits = model(torch.tensor([context]))[0][0, -1]
            expected = float(torch.softmax(logits.double(), -1)[event["id"]])
            assert event["prob"] == pytest.approx(expected, abs=1e-5)
            context.append(event["id"])


def test_the_oldest_turns_are_dropped_with_a_notice_as_the_session_drops_them(
    chat_server, chat_api
):
    conversation = [user("hi"), assistant("hello there!")] * 3 + [user("2+2?")]
    status, events = chat(chat_server, conversation, temperature=0, max_tokens=10)
    assert status == 200
    assert events[0]["type"] == "notice"
    assert "dropped the oldest" in events[0]["text"] and "48 tokens" in events[0]["text"]
    session = reference_session(chat_api, temperature=0, max_tokens=10)
    session.history = [Message(m["role"], m["content"]) for m in conversation[:-1]]
    expected = session.send("2+2?")
    assert events[0]["text"] == expected.notices[0]
    assert events[-1]["text"] == "".join(expected) and expected.text


def test_a_run_without_a_chat_template_is_a_clear_error(chat_server):
    status, answer = request(chat_server, "/api/chat", {"run": "alpha", "messages": [user("the")]})
    assert status == 400
    assert "has no chat template" in answer["error"]
    assert "init_from=" in answer["error"] and "chat:builtin" in answer["error"]


def test_the_runs_say_which_can_chat_and_the_weights_their_engine_reads(chat_server):
    status, info = request(chat_server, "/api/runs")
    assert status == 200
    assert {r["name"]: (r["chat"], r["weights"]) for r in info["runs"]} == {
        "chat": (True, "float32"),
        "alpha": (False, "float32"),
    }


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"messages": None}, 400, "messages must be a non-empty list of messages, not null"),
        ({"messages": []}, 400, "messages must be a non-empty list"),
        ({"messages": "hi"}, 400, "messages must be a non-empty list of messages, not a string"),
        ({"messages": ["hi"]}, 400, "messages[0] must be an object, not a string"),
        ({"messages": [{"role": "system", "content": "x"}, user("hi")]}, 400, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, 400, "content must be a string"),
        ({"messages": [user("hi"), assistant("yo")]}, 400, "the last of messages must be the user"),
        ({"messages": [user("")]}, 400, "the last of messages must be the user"),
        ({"messages": [user("hi")] * 201}, 400, "messages has 201 messages; the limit is 200"),
        ({"messages": [user("x" * 201)]}, 400, "the limit is 200"),
        ({"max_tokens": 41}, 400, "max_tokens must be between 1 and 40"),
        ({"temperature": -1}, 400, "temperature must be between 0.0 and 5.0"),
        ({"top_p": 0}, 400, "top_p must be between 0.01 and 1.0"),
        ({"seed": -1}, 400, "seed must be between 0"),
        ({"system": 5}, 400, "system must be a string, not a number"),
        ({"run": "gamma"}, 404, "unknown run"),
        ({"messages": [user("ZZ")]}, 400, "cannot encode"),
        ({"messages": [user("hi " * 30)]}, 400, "write a shorter message"),
    ],
)
def test_bad_chat_requests_are_json_errors_not_streams(chat_server, body, status, message):
    raw = json.dumps({"run": "chat", "messages": [user("hi")], **body}).encode()
    got, answer = request(chat_server, "/api/chat", raw=raw)
    assert got == status and message in answer["error"], answer


def test_generation_runs_on_the_engine_built_once_never_on_the_model(chat_api):
    run = chat_api.runs["chat"]
    engine = run.engine
    calls: list[int] = []
    handle = run.loaded.model.lm_head.register_forward_hook(lambda *_: calls.append(1))
    try:
        for start, events in (
            (chat_api.start_chat, chat_api.chat),
            (chat_api.start_generation, chat_api.generate),
        ):
            body = {"run": "chat", "messages": [user("hi")], "text": "hi", "temperature": 0}
            assert len(list(events(start(body)))) > 1
    finally:
        handle.remove()
    assert calls == [] and run.engine is engine


def test_an_int8_engine_serves_the_chat_view(chat_root):
    from tinylm.serve.api import Api
    from tinylm.serve.served import load_runs

    api = Api(load_runs([chat_root], weights="int8"), {}, LIMITS)
    assert api.runs["chat"].engine.weights == "int8"
    assert api.describe()["runs"][0]["weights"] == "int8"
    events = list(api.chat(api.start_chat({"messages": [user("hi")], "temperature": 0})))
    assert events[-1]["type"] == "done" and events[-1]["tokens"] > 0
    assert all(0 < e["prob"] <= 1 for e in events[:-1])


def test_load_chat_model_gives_the_template_or_says_how_to_make_one(chat_root, runs_root):
    from tinylm.errors import TinylmError
    from tinylm.inference.loading import load_chat_model

    engine, tokenizer, template = load_chat_model(chat_root / "chat")
    assert template.end_id == tokenizer.special_tokens["<|end|>"]
    assert engine.config.vocab_size == tokenizer.vocab_size and engine.weights == "float32"
    with pytest.raises(TinylmError, match="has no chat template.*init_from=.*chat:builtin"):
        load_chat_model(runs_root / "alpha")


def test_a_quantised_chat_run_chats_with_its_stored_int8_weights(chat_root, tmp_path):
    from tinylm.inference.loading import load_chat_model, load_model
    from tinylm.inference.quantized_run import save_quantized

    float_model, _, meta = load_model(chat_root / "chat")
    save_quantized(float_model, meta, tmp_path / "int8", "int8")
    engine, tokenizer, template = load_chat_model(tmp_path / "int8")
    assert engine.weights == "int8" and template.end_id == tokenizer.special_tokens["<|end|>"]
    prompt = template.render_for_generation([Message("user", "hi")])
    expected = list(DecodeEngine(float_model, "int8").generate(prompt, 12, temperature=0.0))
    assert list(engine.generate(prompt, 12, temperature=0.0)) == expected
