"""The chat session: greedy replies are the model's argmax, end at <|end|>, fit in context."""

from __future__ import annotations

import pytest
import torch
from chat_model import TURNS, train_chat_model

from conftest import one_torch_thread
from tinylm.chat.conversations import Message
from tinylm.chat.template import ChatTemplate
from tinylm.errors import SettingError, TinylmError
from tinylm.inference.chat_session import ChatSession, ChatSettings
from tinylm.inference.engine import DecodeEngine


@pytest.fixture(scope="module")
def trained():
    with one_torch_thread():
        model, tokenizer = train_chat_model()
    return model, tokenizer, ChatTemplate(tokenizer)


def session(trained, weights="float32", **settings):
    model, tokenizer, template = trained
    system = settings.pop("system", None)
    settings.setdefault("temperature", 0)
    engine = DecodeEngine(model, weights)
    chosen = ChatSettings(**settings)
    return ChatSession(engine, tokenizer, template, system=system, settings=chosen)


@torch.no_grad()
def argmax_reply(model, prompt: list[int], end_id: int, max_tokens: int) -> list[int]:
    """The reference: the model's full forward pass, argmax, appended, until <|end|>."""
    ids = list(prompt)
    out = []
    for _ in range(max_tokens):
        logits, _ = model(torch.tensor([ids]))
        token = int(logits[0, -1].argmax())
        if token == end_id:
            break
        out.append(token)
        ids.append(token)
    return out


@pytest.mark.parametrize(("system", "user", "reply"), TURNS)
def test_a_greedy_reply_is_the_models_own_greedy_decoding_and_the_learned_reply(
    trained, system, user, reply
):
    model, tokenizer, template = trained
    chat = session(trained, system=system, max_tokens=20)
    answer = chat.send(user)
    pieces = list(answer)
    messages = [Message("system", system)] if system else []
    prompt = template.render_for_generation([*messages, Message("user", user)])
    assert answer.prompt == prompt
    assert answer.ids == argmax_reply(model, prompt, template.end_id, 20)
    assert "".join(pieces) == answer.text == reply
    assert answer.finish_reason == "end"  # it stopped at <|end|>, which is not in the text
    assert template.end_id not in answer.ids
    assert chat.history == [Message("user", user), Message("assistant", reply)]
    if "é" in reply:  # streamed piece by piece, each whole characters
        assert len(pieces) == len(reply)


def test_a_second_turn_sees_the_first_and_max_tokens_cuts_a_reply(trained):
    model, tokenizer, template = trained
    chat = session(trained, max_tokens=3)
    first = chat.send("hi")
    assert "".join(first) == "hel" and first.finish_reason == "length"
    assert chat.history[-1] == Message("assistant", "hel")
    second = chat.send("Über café?")
    text = "".join(second)
    expected_prompt = template.render_for_generation(
        [Message("user", "hi"), Message("assistant", "hel"), Message("user", "Über café?")]
    )
    assert second.prompt == expected_prompt
    assert second.ids == argmax_reply(model, expected_prompt, template.end_id, 3)
    assert text == tokenizer.decode(second.ids)
    assert second.finish_reason == ("length" if len(second.ids) == 3 else "end")


def test_the_oldest_turns_are_dropped_whole_the_system_prompt_kept_with_a_notice(trained):
    _, _, template = trained
    chat = session(trained, system="be brief.", max_tokens=24)  # shows at most 48 - 24 tokens
    assert chat.prompt_budget() == 24
    first = chat.send("hi")
    assert list(first) == list("hey.") and first.notices == []
    second = chat.send("2+2?")  # 1 + 11 + 4 + 6 + 6 + 1 = 29 tokens with the first turn: too many
    assert len(second.notices) == 1
    assert "dropped the oldest 1 turn" in second.notices[0] and "48 tokens" in second.notices[0]
    kept = [Message("system", "be brief."), Message("user", "2+2?")]
    assert second.prompt == template.render_for_generation(kept)
    "".join(second)
    assert chat.history[0] == Message("user", "2+2?")  # the first turn is gone, whole
    assert chat.messages()[0] == Message("system", "be brief.")
    assert len(second.prompt) <= 24


def test_a_message_that_cannot_fit_is_refused_and_the_history_is_unchanged(trained):
    chat = session(trained, max_tokens=24)
    "".join(chat.send("hi"))
    before = list(chat.history)
    with pytest.raises(TinylmError, match="your message take 2[0-9] tokens.*at most 24"):
        chat.send("hi " * 7)
    assert chat.history == before


def test_a_character_the_tokenizer_lacks_is_named_and_nothing_changes(trained):
    chat = session(trained)
    with pytest.raises(TinylmError) as caught:
        chat.send("hi /x")
    message = str(caught.value)
    assert "cannot encode the character '/'" in message and "without it" in message
    assert not isinstance(caught.value, SettingError)  # no advice to retrain a tokenizer
    assert chat.history == []


def test_an_interrupted_reply_keeps_what_was_written(trained):
    chat = session(trained, max_tokens=20)
    reply = chat.send("hi")
    assert next(reply) + next(reply) == "he"
    reply.close()
    assert reply.finish_reason == "interrupted"
    assert chat.history == [Message("user", "hi"), Message("assistant", "he")]
    again = chat.send("2+2?")  # the next turn renders the partial reply, closed by <|end|>
    assert Message("assistant", "he") in chat.messages()
    assert "".join(again) and again.finish_reason in ("end", "length")


def test_an_unfinished_reply_is_closed_by_the_next_message_and_reset_forgets(trained):
    chat = session(trained, system="be brief.", max_tokens=8)
    reply = chat.send("hi")
    next(reply)
    chat.send("2+2?")
    assert reply.finish_reason == "interrupted"
    assert [m.role for m in chat.history] == ["user", "assistant", "user"]
    chat.reset()
    assert chat.history == [] and chat.messages() == [Message("system", "be brief.")]


def test_seeded_sampling_repeats_and_each_reply_has_its_own_seed(trained):
    model, tokenizer, template = trained
    runs = []
    for _ in range(2):
        chat = session(trained, temperature=1.5, seed=7, max_tokens=12)
        runs.append(["".join(chat.send("hi")), "".join(chat.send("hi"))])
    assert runs[0] == runs[1]
    chat = session(trained, temperature=1.5, seed=7, max_tokens=12)
    "".join(chat.send("hi"))
    second = chat.send("hi")
    "".join(second)
    engine = DecodeEngine(model)
    stops = {template.end_id, tokenizer.eos_id}
    expected = list(engine.generate(second.prompt, 12, temperature=1.5, stop_ids=stops, seed=8))
    assert second.ids == expected


@pytest.mark.parametrize("weights", ["bfloat16", "int8"])
def test_smaller_weight_formats_chat_too(trained, weights):
    chat = session(trained, weights, max_tokens=20)
    reply = chat.send("2+2?")
    assert "".join(reply) == "four."  # a well-learned reply survives the rounding
    assert reply.finish_reason == "end"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"temperature": -1.0}, "temperature must be a number >= 0"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": 0}, "top_k must be a positive integer"),
        ({"top_p": 1.5}, "top_p must be in"),
        ({"max_tokens": 0}, "max_tokens must be a positive integer"),
        ({"seed": -3}, "seed must be an integer"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(trained, changes, message):
    chat = session(trained, temperature=0.5)
    with pytest.raises(TinylmError, match=message):
        chat.update(**changes)
    assert chat.settings == ChatSettings(temperature=0.5)
    assert chat.update(temperature=0.25).temperature == 0.25


def test_ctrl_c_inside_generation_keeps_the_reply_so_far(trained, monkeypatch):
    chat = session(trained, max_tokens=20)
    sample = chat._sample

    def interrupted(prompt, seed):
        for n, token in enumerate(sample(prompt, seed)):
            if n == 3:
                raise KeyboardInterrupt  # as if Ctrl-C arrived inside the fourth forward pass
            yield token

    monkeypatch.setattr(chat, "_sample", interrupted)
    reply = chat.send("hi")
    with pytest.raises(KeyboardInterrupt):
        "".join(reply)
    assert reply.finish_reason == "interrupted" and reply.text == "hel"
    assert chat.history[-1] == Message("assistant", "hel")
    reply.close()  # what the CLI does next: nothing more is added
    assert len(chat.history) == 2
