"""``tinylm chat`` end to end: piped turns and commands, errors, and a Hugging Face chat folder."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest
import torch
from chat_model import save_chat_model, train_chat_model

from conftest import one_torch_thread
from tinylm.checkpoint import save_checkpoint
from tinylm.cli import chat_cmds
from tinylm.cli.main import main
from tinylm.interop.export import export_model
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.bpe import BPETokenizer


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat")
    with one_torch_thread():
        model, tokenizer = train_chat_model()
    save_chat_model(folder / "ckpt", model, tokenizer)
    save_checkpoint(folder / "base", model, None, 0, tokenizer=tokenizer)  # no chat template
    return folder


def chat(monkeypatch, capsys, args, lines):
    """Run ``tinylm chat ARGS`` with ``lines`` piped in; (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    status = main(["chat", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_piped_lines_are_turns_and_each_reply_is_one_line(chat_run, monkeypatch, capsys):
    lines = "hi\n\nÜber café?\n/quit\nhi\n"  # blank lines are skipped, /quit ends the input
    args = [chat_run / "ckpt", "--temperature", "0", "--max-tokens", "20"]
    status, out, err = chat(monkeypatch, capsys, args, lines)
    assert status == 0
    assert out == "hello there!\nja, café ✓\n"
    assert "> " not in out and "chatting with" not in err  # no decorations without a terminal


def test_temperature_reset_and_system_commands_change_the_next_replies(
    chat_run, monkeypatch, capsys
):
    args = [chat_run / "ckpt", "--temperature", "0", "--max-tokens", "24", "--seed", "5"]
    # 48 tokens of context less 24 for the reply: "2+2?" after the first turn does not fit
    status, out, err = chat(monkeypatch, capsys, args, "hi\n2+2?\n")
    assert status == 0 and out.splitlines()[0] == "hello there!"
    assert "dropped the oldest 1 turn" in err
    script = "hi\n/reset\n2+2?\n/temperature 3\nhi\n/temp 0\n/system be brief.\n/reset\nhi\n"
    status, out, err = chat(monkeypatch, capsys, args, script)
    replies = out.splitlines()
    assert status == 0 and len(replies) == 4
    assert replies[:2] == ["hello there!", "four."] and "dropped" not in err  # reset forgot
    assert "temperature 3" in err and replies[2] != "hello there!"  # sampled, not greedy
    assert replies[3] == "hey."  # greedy again, and the system prompt is shown to the model
    assert "system prompt: be brief." in err


class FakeReply:
    notices = ["a notice"]
    finish_reason = "end"

    def __iter__(self):
        return iter(["ok"])


class FakeSession:
    """Records what the chat loop sends; every reply is "ok"."""

    def __init__(self):
        self.sent = []
        self.settings = chat_cmds.argparse.Namespace(temperature=0.7)

    def update(self, **changes):
        raise AssertionError(f"a bad value reached the session: {changes}")

    def send(self, text):
        self.sent.append(text)
        return FakeReply()


def test_end_of_input_ends_the_chat_and_double_slash_sends_a_slash(monkeypatch, capsys):
    session = FakeSession()
    monkeypatch.setattr(sys, "stdin", io.StringIO("//x\r\n  \nlast line"))  # no final newline
    chat_cmds.converse(session, interactive=False)
    assert session.sent == ["/x", "last line"]
    out, err = capsys.readouterr()
    assert out == "ok\nok\n" and err == "a notice\na notice\n"


def test_at_a_terminal_a_mistake_is_reported_and_ctrl_c_at_the_prompt_ends(monkeypatch, capsys):
    typed = iter(["/bogus", "/temperature x", "hi"])

    def fake_input(prompt):
        assert prompt == "> "
        for line in typed:
            return line
        raise KeyboardInterrupt

    monkeypatch.setattr("builtins.input", fake_input)
    session = FakeSession()
    chat_cmds.converse(session, interactive=True)  # returns: Ctrl-C at the prompt quits cleanly
    assert session.sent == ["hi"]
    out, err = capsys.readouterr()
    assert "error: unknown command /bogus" in err and "/temperature needs a number" in err
    assert out == "ok\n\n"


def test_help_lists_the_commands_on_stderr(chat_run, monkeypatch, capsys):
    status, out, err = chat(monkeypatch, capsys, [chat_run / "ckpt"], "/help\n")
    assert status == 0 and out == ""
    for command in ("/temperature X", "/system TEXT", "/reset", "/quit"):
        assert command in err


def test_a_reply_is_printed_safely_on_one_line_from_a_pipe(capsys):
    class Reply:
        finish_reason = "end"

        def __iter__(self):
            return iter(["two\nlines", "\x1b[2J"])

    chat_cmds.show_reply(Reply(), None, one_line=True)
    assert capsys.readouterr().out == "two\\nlines\\x1b[2J\n"
    chat_cmds.show_reply(Reply(), None, one_line=False)
    assert capsys.readouterr().out == "two\nlines\\x1b[2J\n"


def test_ctrl_c_during_a_reply_stops_the_reply_not_the_chat(capsys):
    class Reply:
        finish_reason = None
        closed = False

        def __iter__(self):
            yield "hel"
            raise KeyboardInterrupt

        def close(self):
            self.closed = True

    reply = Reply()
    chat_cmds.show_reply(reply, None, one_line=False)
    out, err = capsys.readouterr()
    assert reply.closed and out == "hel\n" and "reply stopped" in err


def test_a_run_without_a_chat_template_is_told_how_to_make_one(chat_run, monkeypatch, capsys):
    status, out, err = chat(monkeypatch, capsys, [chat_run / "base"], "hi\n")
    assert status == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinylm: error: ")
    assert f"tinylm train --init-from {chat_run / 'base'} --data chat:builtin --out DIR" in lines[0]


@pytest.mark.parametrize(
    ("extra", "lines", "message"),
    [
        (["--temperature", "-1"], "hi\n", "temperature must be a number >= 0"),
        (["--max-tokens", "0"], "hi\n", "max_tokens must be a positive integer"),
        (["--top-p", "2"], "hi\n", "top_p must be in"),
        (["--weights", "int3"], "hi\n", "unknown weight format 'int3'.*--weights"),
        ([], "/temperature warm\n", "/temperature needs a number"),
        ([], "/temperature -2\n", "temperature must be a number >= 0"),
        ([], "/bogus\n", "unknown command /bogus"),
        ([], "hi " * 30 + "\n", "take .* tokens, but the model shows at most"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(chat_run, monkeypatch, capsys, extra, lines, message):
    status, out, err = chat(monkeypatch, capsys, [chat_run / "ckpt", *extra], lines)
    assert status == 2 and out == ""
    err_lines = err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("tinylm: error: ")
    assert re.search(message, err_lines[0])


# -- a Hugging Face chat model folder -------------------------------------------------------

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def hf_chat_folder(tmp_path_factory):
    text = "the cat sat on the mat. what is it? it is a cat. ça va? 猫\n" * 30
    tokenizer = BPETokenizer.train(
        text, 280, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], progress=False
    )
    torch.manual_seed(3)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1, n_embd=32)
    model = GPT(config).eval()
    folder = tmp_path_factory.mktemp("hf") / "model"
    export_model(model, tokenizer, folder, "hf")
    config_path = folder / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text("utf-8"))
    tokenizer_config.update(chat_template=CHATML, eos_token="<|im_end|>")
    config_path.write_text(json.dumps(tokenizer_config), "utf-8")
    return folder, model, tokenizer


@torch.no_grad()
def greedy(model, ids, stops, max_tokens):
    out = []
    for _ in range(max_tokens):
        token = int(model(torch.tensor([ids + out]))[0][0, -1].argmax())
        if token in stops:
            break
        out.append(token)
    return out


def test_a_hugging_face_folder_chats_with_its_own_template(hf_chat_folder, monkeypatch, capsys):
    from transformers import AutoTokenizer  # the reference (the test extra has it)

    folder, model, tokenizer = hf_chat_folder
    reference = AutoTokenizer.from_pretrained(str(folder))
    stops = {tokenizer.special_tokens["<|im_end|>"], tokenizer.special_tokens["<|endoftext|>"]}
    args = [folder, "--temperature", "0", "--max-tokens", "6"]
    status, out, err = chat(monkeypatch, capsys, args, "what is it?\nça va? 猫\n")
    assert status == 0, err
    conversation, expected = [], []
    for user in ("what is it?", "ça va? 猫"):
        conversation.append({"role": "user", "content": user})
        ids = reference.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        reply = tokenizer.decode(greedy(model, list(ids), stops, 6))
        conversation.append({"role": "assistant", "content": reply})
        expected.append(reply)
    assert out == "".join(chat_cmds.printable(r, one_line=True) + "\n" for r in expected)


def test_a_hugging_face_folder_without_a_template_is_refused(hf_chat_folder, tmp_path, capsys):
    folder, _, _ = hf_chat_folder
    for path in folder.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    config = json.loads((tmp_path / "tokenizer_config.json").read_text("utf-8"))
    del config["chat_template"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), "utf-8")
    assert main(["chat", str(tmp_path)]) == 2
    assert "has no chat_template" in capsys.readouterr().err
