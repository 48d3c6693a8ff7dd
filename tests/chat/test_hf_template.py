"""A Hugging Face folder's Jinja chat template: tinylm's ids equal ``apply_chat_template``'s."""

from __future__ import annotations

import json

import pytest

from tinylm.chat.conversations import Message
from tinylm.chat.hf_template import HFChatTemplate, load_hf_chat_template
from tinylm.errors import TinylmError
from tinylm.interop.hf_tokenizer import to_hf_tokenizer_config, to_hf_tokenizer_json
from tinylm.tokenizers.bpe import BPETokenizer

SPECIALS = ["<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]
TEXT = "the cat sat on the mat. what is it? it is a cat. Ünïcödé çà 猫 ok\n" * 4

# Made for this test: roles checked with raise_exception, a default system turn, whitespace
# that trim_blocks / lstrip_blocks decide, tojson, bos/eos variables and a generation prompt.
TEMPLATE = """{{ bos_token }}
{% if messages[0]['role'] != 'system' %}
<|im_start|>system
You are tiny.<|im_end|>
{% endif %}
{% for message in messages %}
    {% if message['role'] not in ['system', 'user', 'assistant'] %}
        {{ raise_exception('unknown role ' + message['role']) }}
    {% endif %}
<|im_start|>{{ message['role'] }}
{{ message['content'] | trim }}<|im_end|>
{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant {{ {'n': messages | length, 'who': 'ü'} | tojson }}
{% endif %}"""

CONVERSATIONS = [
    [{"role": "user", "content": "hello there"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "what is it?"},
        {"role": "assistant", "content": "  it is a cat.  "},
        {"role": "user", "content": "Ünïcödé çà 猫 — and\nnewlines\ttabs"},
    ],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "🙂 emoji and 'quotes' \"double\""},
    ],
]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf_chat")
    tokenizer = BPETokenizer.train(TEXT * 10, 300, SPECIALS, progress=False)
    (folder / "tokenizer.json").write_text(json.dumps(to_hf_tokenizer_json(tokenizer)), "utf-8")
    config = to_hf_tokenizer_config(tokenizer, 64)
    config["chat_template"] = TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(config), "utf-8")
    return folder, tokenizer


def messages(conversation):
    return [Message(m["role"], m["content"]) for m in conversation]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_the_ids_equal_transformers_apply_chat_template(hf_folder, conversation):
    from transformers import AutoTokenizer  # the reference (the test extra has it)

    folder, tokenizer = hf_folder
    reference = AutoTokenizer.from_pretrained(str(folder))
    expected = reference.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    template = load_hf_chat_template(folder, tokenizer)
    assert template.render_for_generation(messages(conversation)) == list(expected)
    text = reference.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert template.render_text(messages(conversation)) == text
    assert template.end_id == tokenizer.special_tokens["<|eos|>"]


def test_the_rendering_is_the_one_worked_out_by_hand(hf_folder):
    folder, tokenizer = hf_folder
    template = load_hf_chat_template(folder, tokenizer)
    text = template.render_text([Message("user", " hi ")])
    # a block tag eats its newline (trim_blocks) and indentation (lstrip_blocks); {{ }} does not
    assert text == (
        "<|bos|>\n<|im_start|>system\nYou are tiny.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        '<|im_start|>assistant {"n": 1, "who": "ü"}\n'
    )
    ids = template.render_for_generation([Message("user", " hi ")])
    assert ids[0] == tokenizer.special_tokens["<|bos|>"]
    assert ids.count(tokenizer.special_tokens["<|im_start|>"]) == 3


def test_a_chat_template_jinja_file_comes_before_the_config(hf_folder, tmp_path):
    folder, tokenizer = hf_folder
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    (tmp_path / "chat_template.jinja").write_text(
        "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}", "utf-8"
    )
    template = load_hf_chat_template(tmp_path, tokenizer)
    assert template.render_text([Message("user", "x")]) == "[user]x"


def test_raise_exception_and_syntax_errors_are_one_line_tinylm_errors(hf_folder):
    folder, tokenizer = hf_folder
    template = load_hf_chat_template(folder, tokenizer)
    with pytest.raises(TinylmError, match="refused the conversation: unknown role tool"):
        template.render_text([Message("tool", "x")])
    specials = {"eos_token": "<|eos|>"}
    with pytest.raises(TinylmError, match="does not parse"):
        HFChatTemplate("t.json", tokenizer, specials, "{% for m in messages %}")


def test_the_sandbox_refuses_python_internals(hf_folder):
    _, tokenizer = hf_folder
    specials = {"eos_token": "<|eos|>"}
    escape = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    template = HFChatTemplate("t.json", tokenizer, specials, escape)
    with pytest.raises(TinylmError, match="refused the conversation"):
        template.render_text([Message("user", "x")])
    appender = "{% set _ = messages.append(1) %}ok"
    with pytest.raises(TinylmError, match="refused the conversation"):
        HFChatTemplate("t.json", tokenizer, specials, appender).render_text([Message("user", "x")])


def test_no_template_is_none_and_no_eos_is_an_error(hf_folder, tmp_path):
    _, tokenizer = hf_folder
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|eos|>"}), "utf-8")
    assert load_hf_chat_template(tmp_path, tokenizer) is None
    with pytest.raises(TinylmError, match="names no eos_token"):
        HFChatTemplate("t.json", tokenizer, {"bos_token": "<|bos|>"}, "x")
