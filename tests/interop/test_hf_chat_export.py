"""A chat run exported to Hugging Face converses there as it does in tinylm, and comes back.

The export's Jinja ``chat_template`` must give, through transformers'
``apply_chat_template`` (the independent reference), the very ids tinylm's
``ChatTemplate`` renders; tinylm's own Jinja renderer on the folder must too, so
``tinylm chat EXPORT`` replies as ``tinylm chat RUN``; transformers' ``generate``
must stop where tinylm's reply ends; and ``tinylm import`` of the export must
give a chat run again. Two tokenizers: the char one (the tiny chat model of
``tests/inference/chat_model.py``, trained to known replies) and a BPE one (a
random model: ids and replies are compared, not their sense).
"""

from __future__ import annotations

import io
import json
import shutil
import sys

import pytest
import torch

from conftest import one_torch_thread
from inference.chat_model import BLOCK_SIZE, save_chat_model, train_chat_model
from tinylm.chat.conversations import Conversation, Message
from tinylm.chat.hf_template import load_hf_chat_template
from tinylm.chat.template import (
    CHAT_TOKENS,
    END,
    ChatTemplate,
    add_chat_tokens,
    load_chat_template,
    template_record,
)
from tinylm.checkpoint import save_checkpoint
from tinylm.cli.main import main
from tinylm.inference.loading import load_model
from tinylm.interop.hf_import import read_hf_tokenizer
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.bpe import BPETokenizer

transformers = pytest.importorskip("transformers", reason="the test extra installs transformers")

pytestmark = pytest.mark.slow  # transformers takes seconds to import and load

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def conversations(kind: str) -> list[list[Message]]:
    """Conversations in the tokenizer's alphabet: a system prompt, several turns, non-ASCII."""
    if kind == "char":  # the chat model's characters only: an unseen one has no id
        texts = ["hi", "Über café?", "ja, café ✓", "be brief.", "2+2?", "four."]
    else:
        texts = ["hi there", "Über café? 日本語 ✓ 🙂", "ok.\nnext line", "be brief.", "2+2?", "4"]
    hi, question, answer, system, sum_, four = texts
    return [
        [Message("user", hi)],
        [Message("system", system), Message("user", question)],
        [Message("user", hi), Message("assistant", answer), Message("user", sum_)],
        [
            Message("system", system),
            Message("user", sum_),
            Message("assistant", four),
            Message("user", question),
            Message("assistant", answer),
        ],
    ]


def export(run, out) -> None:
    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 0


@pytest.fixture(scope="module")
def char_chat(tmp_path_factory):
    """(checkpoint, its HF export, tokenizer) of the chat model trained to known replies."""
    folder = tmp_path_factory.mktemp("char-chat")
    with one_torch_thread():
        model, tokenizer = train_chat_model()
    save_chat_model(folder / "run", model, tokenizer)
    export(folder / "run", folder / "hf")
    return folder / "run", folder / "hf", tokenizer


@pytest.fixture(scope="module")
def bpe_chat(tmp_path_factory):
    """(checkpoint, its HF export, tokenizer) of a random GPT with a BPE tokenizer + chat tokens."""
    folder = tmp_path_factory.mktemp("bpe-chat")
    text = "hi there, Über café? 日本語 ✓ 🙂 be brief. 2+2? 4 ok. next line\n" * 20
    tokenizer = add_chat_tokens(
        BPETokenizer.train(text, 300, special_tokens=["<|endoftext|>"], progress=False)
    )
    torch.manual_seed(4)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1, n_embd=32)
    save_checkpoint(
        folder / "run", GPT(config).eval(), None, 0, tokenizer=tokenizer,
        chat_template=template_record(),
    )  # fmt: skip
    export(folder / "run", folder / "hf")
    return folder / "run", folder / "hf", tokenizer


@pytest.fixture(params=["char", "bpe"])
def chat_export(request):
    return request.param, request.getfixturevalue(f"{request.param}_chat")


def as_dicts(messages: list[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def test_apply_chat_template_gives_tinylm_ids(chat_export):
    kind, (_, hf, tokenizer) = chat_export
    reference = transformers.AutoTokenizer.from_pretrained(str(hf))
    template = ChatTemplate(tokenizer)
    for messages in conversations(kind):
        expected = template.render_for_generation(messages)
        assert expected[-1] == tokenizer.special_tokens["<|assistant|>"]
        ids = reference.apply_chat_template(
            as_dicts(messages), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        assert list(ids) == expected
        whole = reference.apply_chat_template(
            as_dicts(messages), add_generation_prompt=False, tokenize=True, return_dict=False
        )
        assert list(whole) == template.render(Conversation(tuple(messages))).ids


def test_tinylm_renders_the_exported_template_to_the_same_ids(chat_export):
    kind, (_, hf, tokenizer) = chat_export
    read_back, note = read_hf_tokenizer(hf)
    assert note is None
    hf_template = load_hf_chat_template(hf, read_back)
    assert hf_template is not None and hf_template.end_id == tokenizer.special_tokens[END]
    template = ChatTemplate(tokenizer)
    for messages in conversations(kind):
        assert hf_template.render_for_generation(messages) == template.render_for_generation(
            messages
        )


def test_the_chat_tokens_are_special_and_end_a_reply(chat_export):
    _, (_, hf, tokenizer) = chat_export
    reference = transformers.AutoTokenizer.from_pretrained(str(hf))
    end = tokenizer.special_tokens[END]
    assert reference.eos_token == END and reference.eos_token_id == end
    for name in CHAT_TOKENS:
        assert reference.convert_tokens_to_ids(name) == tokenizer.special_tokens[name]
    ids = ChatTemplate(tokenizer).render(Conversation(tuple(conversations("char")[2]))).ids
    assert reference.decode(ids, skip_special_tokens=True) == "hija, café ✓2+2?"
    generation = json.loads((hf / "generation_config.json").read_text("utf-8"))
    assert generation["eos_token_id"][0] == end
    assert set(generation["eos_token_id"]) == {end, tokenizer.eos_id}


@torch.no_grad()
def tinylm_greedy(model, ids: list[int], stops: set[int], max_tokens: int) -> list[int]:
    """tinylm's greedy reply, a full forward pass per token, up to and with its stop token."""
    out: list[int] = []
    while len(out) < max_tokens and (not out or out[-1] not in stops):
        out.append(int(model(torch.tensor([ids + out]))[0][0, -1].argmax()))
    return out


def test_transformers_generate_writes_tinylm_reply_and_stops_at_its_end(char_chat):
    run, hf, tokenizer = char_chat
    reference = transformers.AutoTokenizer.from_pretrained(str(hf))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(hf)).eval()
    ours, _, _ = load_model(run)
    end = tokenizer.special_tokens[END]
    for messages in conversations("char")[:3]:  # the fourth leaves no room in 48 positions
        inputs = reference.apply_chat_template(
            as_dicts(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        ids = inputs["input_ids"]
        room = BLOCK_SIZE - ids.shape[1]
        with one_torch_thread(), torch.no_grad():  # the mask given: no id is taken for padding
            out = model.generate(**inputs, do_sample=False, max_new_tokens=room, pad_token_id=end)
        new = out[0, ids.shape[1] :].tolist()
        assert new == tinylm_greedy(ours, ids[0].tolist(), {end, tokenizer.eos_id}, room)
        assert new[-1] == end  # HF stopped where tinylm's reply ends
        if messages == [Message("user", "hi")]:
            assert tokenizer.decode(new) == "hello there!" + END  # the learned reply


def chat(monkeypatch, capsys, folder, lines: str, max_tokens: int = 20) -> str:
    """What ``tinylm chat FOLDER --temperature 0`` prints for the piped ``lines``."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    argv = ["chat", str(folder), "--temperature", "0", "--max-tokens", str(max_tokens)]
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def test_tinylm_chat_on_the_export_and_its_import_replies_as_on_the_run(
    char_chat, tmp_path, monkeypatch, capsys
):
    run, hf, tokenizer = char_chat
    lines = "hi\nÜber café?\n"
    on_run = chat(monkeypatch, capsys, run, lines)
    assert on_run == "hello there!\nja, café ✓\n"
    assert chat(monkeypatch, capsys, hf, lines) == on_run
    assert main(["import", str(hf), "--out", str(tmp_path / "imported")]) == 0
    said = capsys.readouterr().out
    assert f"next: tinylm chat {tmp_path / 'imported'}" in said
    _, read_back, meta = load_model(tmp_path / "imported")
    assert meta.chat_template_file is not None
    assert json.loads(meta.chat_template_file.read_text("utf-8")) == template_record()
    assert read_back.special_tokens == tokenizer.special_tokens
    assert chat(monkeypatch, capsys, tmp_path / "imported", lines) == on_run


def test_a_bpe_chat_run_round_trips_with_the_same_layout_and_replies(
    bpe_chat, tmp_path, monkeypatch, capsys
):
    run, hf, tokenizer = bpe_chat
    assert main(["import", str(hf), "--out", str(tmp_path / "imported")]) == 0
    capsys.readouterr()
    _, read_back, meta = load_model(tmp_path / "imported")
    template = load_chat_template(meta.chat_template_file, read_back)
    assert template is not None
    for messages in conversations("bpe"):
        assert template.render_for_generation(messages) == ChatTemplate(
            tokenizer
        ).render_for_generation(messages)
    lines = "hi there\nÜber café? 日本語 ✓ 🙂\n"
    on_run = chat(monkeypatch, capsys, run, lines, max_tokens=6)
    assert chat(monkeypatch, capsys, hf, lines, max_tokens=6) == on_run
    assert chat(monkeypatch, capsys, tmp_path / "imported", lines, max_tokens=6) == on_run


def test_another_template_is_not_carried_and_the_import_says_how_to_chat(
    char_chat, tmp_path, capsys
):
    _, hf, _ = char_chat
    folder = tmp_path / "other"
    shutil.copytree(hf, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text("utf-8"))
    config["chat_template"] = CHATML
    config_path.write_text(json.dumps(config), "utf-8")
    assert main(["import", str(folder), "--out", str(tmp_path / "run")]) == 0
    said = capsys.readouterr().out
    assert "chat_template is not tinylm's layout and was not carried over" in said
    assert f"tinylm chat {folder}" in said
    _, _, meta = load_model(tmp_path / "run")
    assert meta.chat_template_file is None


def test_tinylm_layout_with_another_bos_token_is_not_taken_for_tinylm(char_chat, tmp_path):
    """The same Jinja text with a different ``bos_token`` renders other ids: not carried."""
    _, hf, _ = char_chat
    folder = tmp_path / "other-bos"
    shutil.copytree(hf, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text("utf-8"))
    config["bos_token"] = "<|end|>"
    config_path.write_text(json.dumps(config), "utf-8")
    assert main(["import", str(folder), "--out", str(tmp_path / "run")]) == 0
    assert load_model(tmp_path / "run")[2].chat_template_file is None


def test_a_run_that_is_not_a_chat_model_exports_no_template(char_chat, tmp_path):
    run, _, tokenizer = char_chat
    model, _, _ = load_model(run)
    save_checkpoint(tmp_path / "base", model, None, 0, tokenizer=tokenizer)  # no template
    export(tmp_path / "base", tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text("utf-8"))
    assert "chat_template" not in config and config["eos_token"] == "<BOS>"
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text("utf-8"))
    assert generation["eos_token_id"] == tokenizer.eos_id


def test_a_tokenizer_without_bos_renders_without_one(tmp_path):
    """No BOS id: tinylm's layout starts with the first turn, and so does the Jinja template."""
    text = "hi there, Über café? ✓ be brief. 2+2? 4\n" * 10
    tokenizer = add_chat_tokens(BPETokenizer.train(text, 280, progress=False))
    assert tokenizer.bos_id is None
    config = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_embd=16)
    save_checkpoint(
        tmp_path / "run", GPT(config), None, 0, tokenizer=tokenizer, chat_template=template_record()
    )
    export(tmp_path / "run", tmp_path / "hf")
    reference = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    template = ChatTemplate(tokenizer)
    for messages in conversations("char"):
        expected = template.render_for_generation(messages)
        assert expected[0] == tokenizer.special_tokens[f"<|{messages[0].role}|>"]
        ids = reference.apply_chat_template(
            as_dicts(messages), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        assert list(ids) == expected
