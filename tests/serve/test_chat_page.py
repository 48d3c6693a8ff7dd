"""The page's chat view in Chromium: type a message, watch the tiny chat model's known reply
stream in, coloured by probability; reset; a run without a template says how to make one.

The server holds tests/inference/chat_model.py's model (run ``chat``) and a run with no
chat template (``alpha``); the browser fixture is the page tests'.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .test_page import TIMEOUT_MS, browser, screenshots  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow

#: Each token's colour must be the one the page's helper gives its probability.
COLOURED_BY_PROB = """els => els.map(e => {
  const probe = document.createElement('span');
  probe.style.background = probColour(Number(e.dataset.prob));
  return e.style.background !== '' && e.style.background === probe.style.background;
})"""


@pytest.fixture
def chat_page(browser, chat_server) -> Iterator:  # noqa: F811
    context = browser.new_context(viewport={"width": 1180, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.goto(chat_server.url + "#chat")
    page.wait_for_selector("body[data-ready=true]")
    yield page
    context.close()
    assert script_errors == []


def send(page, text: str) -> None:
    page.fill("#chat-message", "")
    page.locator("#chat-message").press_sequentially(text)
    page.keyboard.press("Enter")


def test_a_message_gets_the_models_known_reply_streamed_and_coloured(
    chat_page,
    chat_api,
    screenshots,  # noqa: F811
):
    page = chat_page
    page.fill("#chat-temperature", "0")
    assert page.is_visible("#chat-message") and not page.is_visible("#prompt")
    send(page, "hi")
    page.wait_for_selector('.chat-msg.assistant[data-done="true"]')
    assert page.locator(".chat-msg.user").all_inner_texts() == ["hi"]
    reply = page.locator(".chat-msg.assistant")
    assert reply.inner_text() == "hello there!"
    assert reply.get_attribute("data-reason") == "end"
    tokens = reply.locator(".gen-tok")
    ids = [int(i) for i in tokens.evaluate_all("els => els.map(e => e.dataset.id)")]
    assert ids == chat_api.runs["chat"].tokenizer.encode("hello there!")
    probs = [float(p) for p in tokens.evaluate_all("els => els.map(e => e.dataset.prob)")]
    assert all(0 < p <= 1 for p in probs)
    assert all(tokens.evaluate_all(COLOURED_BY_PROB))
    assert page.input_value("#chat-message") == ""
    assert page.is_enabled("#chat-send") and page.is_disabled("#chat-stop")

    send(page, "2+2?")  # the conversation so far goes with it, and the reply follows
    page.wait_for_selector('.chat-msg.assistant[data-done="true"] >> nth=1')
    assert page.locator(".chat-msg").count() == 4
    page.locator("body").screenshot(path=screenshots / "chat.png")

    page.click("#chat-reset")
    assert page.locator(".chat-msg").count() == 0
    send(page, "hi")  # a fresh conversation: the first reply again
    page.wait_for_selector('.chat-msg.assistant[data-done="true"]')
    assert page.locator(".chat-msg").all_inner_texts() == ["hi", "hello there!"]


def test_the_system_prompt_is_sent_with_the_conversation(chat_page):
    page = chat_page
    page.fill("#chat-temperature", "0")
    page.fill("#chat-system", "be brief.")
    send(page, "hi")
    page.wait_for_selector('.chat-msg.assistant[data-done="true"]')
    assert page.locator(".chat-msg.assistant").inner_text() == "hey."


def test_history_trimming_is_noticed_and_errors_are_shown(chat_page):
    page = chat_page
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max", "10")
    for n in range(6):  # each exchange adds 10 tokens or more to a 48-token context
        send(page, "Über café?")
        page.wait_for_selector(f'.chat-msg.assistant[data-done="true"] >> nth={n}')
        if page.inner_text("#chat-notice"):
            break
    assert "dropped the oldest" in page.inner_text("#chat-notice") and 1 <= n < 4
    shown = page.locator(".chat-msg").count()
    send(page, "ZZ")  # characters the tokenizer lacks: refused, the conversation unchanged
    page.wait_for_function("() => document.querySelector('#error').textContent.includes('encode')")
    assert page.locator(".chat-msg").count() == shown
    assert page.input_value("#chat-message") == "ZZ"  # kept, to be corrected


def test_a_run_without_a_template_says_how_to_make_one(chat_page, chat_api):
    page = chat_page
    page.select_option("#run", "alpha")
    page.wait_for_selector("#chat-missing", state="visible")
    assert not page.is_visible("#chat-ready")
    advice = page.inner_text("#chat-advice")
    path = str(chat_api.runs["alpha"].run_dir)
    assert f"tinylm train --init-from {path} --data chat:builtin --out DIR" in advice
    page.select_option("#run", "chat")
    page.wait_for_selector("#chat-ready", state="visible")
