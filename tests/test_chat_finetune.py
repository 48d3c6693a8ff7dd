"""Chat fine-tuning through ``tinylm train --init-from RUN --data chat:...`` and ``init_from``.

A tiny base run is fine-tuned on a conversations file and on the built-in set; the
checkpoints must carry the template and the grown tokenizer, the logged validation
loss must equal the masked loss computed by hand one conversation at a time, the
command line and the library must train the same run, a resume must repeat an
uninterrupted run bit for bit, and bad input must be one line and exit 2.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from conftest import fails_with, metric_records, tensors_digest
from tinylm.chat.builtin import builtin_conversations
from tinylm.chat.template import CHAT_TOKENS, ChatTemplate, load_chat_template
from tinylm.cli.main import main
from tinylm.compare.execute import collect_result
from tinylm.compare.plan import Variant
from tinylm.inference.loading import load_model
from tinylm.inspect.loaded import LoadedModel
from tinylm.run.chat_data import read_chat_source
from tinylm.run.start import init_from, resume_run, start_run

pytestmark = pytest.mark.slow  # a handful of tiny training runs

QA = [
    ("what is a cat?", "a cat is an animal."),
    ("what is a mat?", "a mat is on the floor."),
    ("where is the cat?", "the cat sat on the mat."),
    ("is the mat red?", "no, the mat is tan."),
]
TINY = {"n_layer": 1, "n_embd": 16, "n_head": 2, "block_size": 64, "batch_size": 4}
CHAT = {"batch_size": 3, "eval_every": 2, "eval_batches": 2, "sample_tokens": 8}


def flags(settings: dict) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def records(run: Path) -> list[dict]:
    return metric_records(run, ("step", "loss", "val_loss", "val_bpb", "grad_norm"))


def weights(run: Path) -> dict[str, str]:
    return {p.parent.name: tensors_digest(p) for p in sorted(run.glob("ckpt-*/model.safetensors"))}


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory) -> Path:
    lines = []
    for i in range(16):
        question, answer = QA[i % len(QA)]
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if i % 4 == 0:
            messages.insert(0, {"role": "system", "content": "be brief."})
        lines.append(json.dumps({"messages": messages, "id": i}))
    path = tmp_path_factory.mktemp("chat") / "chat.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A 3-step base run whose char tokenizer knows every character of the conversations."""
    folder = tmp_path_factory.mktemp("base")
    text = " ".join(f"{q} {a}" for q, a in QA) + " be brief.\n"
    (folder / "corpus.txt").write_text(text * 30, encoding="utf-8")
    trainer = start_run(
        folder / "corpus.txt",
        overrides={**TINY, "steps": 3},
        out_dir=folder / "run",
        progress=False,
    )
    trainer.fit()
    return folder / "run"


def hand_masked_loss(model, tokenizer, conversations) -> float:
    """Mean -log p(target) over the counted targets, one conversation at a time, unbatched."""
    template = ChatTemplate(tokenizer)
    total, counted = 0.0, 0
    with torch.no_grad():
        for conversation in conversations:
            rendered = template.render(conversation)
            ids = torch.tensor([rendered.ids])
            logits, _ = model(ids[:, :-1])
            logp = torch.log_softmax(logits[0].double(), dim=-1)
            for pos, (target, count) in enumerate(
                zip(rendered.ids[1:], rendered.mask[1:], strict=True)
            ):
                if count:
                    total -= float(logp[pos, target])
                    counted += 1
    return total / counted


def test_cli_and_library_fine_tune_alike_and_the_checkpoint_is_a_chat_model(
    tmp_path, base, chat_file, capsys
):
    argv = ["train", "--init-from", str(base), "--data", f"chat:{chat_file}", "--steps", "4"]
    assert main([*argv, *flags(CHAT), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    capsys.readouterr()
    trainer = init_from(
        base,
        f"chat:{chat_file}",
        overrides={**CHAT, "steps": 4},
        out_dir=tmp_path / "lib",
        progress=False,
    )
    summary = trainer.fit()
    assert records(tmp_path / "cli") == records(tmp_path / "lib")
    assert weights(tmp_path / "cli") == weights(tmp_path / "lib") != {}

    # the checkpoint: the template, and a tokenizer and model grown by the four chat tokens
    base_model, base_tokenizer, _ = load_model(base)
    model, tokenizer, meta = load_model(tmp_path / "lib")
    assert meta.chat_template_file == tmp_path / "lib" / "ckpt-000004" / "chat_template.json"
    assert load_chat_template(meta.chat_template_file, tokenizer) is not None
    assert all(name in tokenizer.special_tokens for name in CHAT_TOKENS)
    assert tokenizer.vocab_size == base_tokenizer.vocab_size + 4 == model.config.vocab_size
    assert base_model.config.vocab_size == base_tokenizer.vocab_size
    assert (tmp_path / "lib" / "ckpt-000002" / "chat_template.json").is_file()

    # run.json says what was kept and held out; the logged val loss is the masked one
    info = json.loads((tmp_path / "lib" / "run.json").read_text())
    chat = info["chat"]
    assert (chat["kept"], chat["dropped"], chat["train"], chat["val"]) == (16, 0, 14, 2)
    assert info["data"] == [f"chat:{chat_file}"] and info["init_from"].endswith("ckpt-000003")
    held_out = trainer.val_batches
    assert sum(int((y != -100).sum()) for _, y in held_out) == chat["counted_val_tokens"]
    val = [r for r in records(tmp_path / "lib") if "val_loss" in r]
    assert [r["step"] for r in val] == [2, 4] and "val_bpb" in val[-1]
    conversations = read_chat_source(f"chat:{chat_file}")
    rendered = {tuple(ChatTemplate(tokenizer).render(c).ids): c for c in conversations}
    val_conversations = [
        rendered[tuple(ids)] for ids in _val_ids(trainer)
    ]  # the held-out ones, from their ids
    expected = hand_masked_loss(model, tokenizer, val_conversations)
    assert val[-1]["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert summary["val_loss"] == val[-1]["val_loss"]

    # what reads run folders reads this one: compare's result, the inspector's model
    result = collect_result(Variant((), 1337), tmp_path / "lib")
    assert (result.steps, result.final_val_loss) == (4, val[-1]["val_loss"])
    inspected = LoadedModel.from_run(tmp_path / "lib")
    assert inspected.token_frequencies() is None  # no prepared tokens: conversations


def _val_ids(trainer) -> list[list[int]]:
    """The held-out conversations' ids, read back from the trainer's validation inputs."""
    found = []
    for x, y in trainer.val_batches:
        for row_x, row_y in zip(x.tolist(), y.tolist(), strict=True):
            last = max(i for i, t in enumerate(row_y) if t != -100)  # the final <|end|>
            found.append([*row_x[: last + 1], row_y[last]])
    return found


def test_a_resumed_fine_tune_repeats_the_uninterrupted_one(tmp_path, base, chat_file):
    whole = tmp_path / "whole"
    init_from(
        base, f"chat:{chat_file}", overrides={**CHAT, "steps": 4}, out_dir=whole, progress=False
    ).fit()
    shutil.copytree(whole, tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "ckpt-000004")  # stopped after the step-2 checkpoint
    assert main(["train", "--resume", "--out", str(tmp_path / "cut"), "--quiet"]) == 0
    assert records(tmp_path / "cut") == records(whole)
    assert weights(tmp_path / "cut") == weights(whole)
    trainer = resume_run(tmp_path / "cut", overrides={"steps": 6}, progress=False)
    assert trainer.step == 4 and trainer.chat_template is not None
    trainer.fit()
    assert (tmp_path / "cut" / "ckpt-000006" / "chat_template.json").is_file()


def test_a_resume_refuses_conversations_that_changed(tmp_path, base, chat_file, capsys):
    data = tmp_path / "chat.jsonl"
    shutil.copy(chat_file, data)
    out = tmp_path / "run"
    init_from(
        base, f"chat:{data}", overrides={**CHAT, "steps": 2}, out_dir=out, progress=False
    ).fit()
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[1:]) + "\n")
    fails_with(capsys, ["train", "--resume", "--out", str(out), "--steps", "4"], "not the ones")


def test_the_builtin_set_fine_tunes_and_the_dropped_count_is_reported_once(tmp_path, capsys):
    corpus = tmp_path / "topics.txt"  # a base whose characters cover the built-in set
    text = "\n".join(m.content for c in builtin_conversations() for m in c.messages)
    corpus.write_text(text, encoding="utf-8")
    settings = {**TINY, "block_size": 192, "steps": 2}
    start_run(corpus, overrides=settings, out_dir=tmp_path / "base", progress=False).fit()
    argv = ["train", "--init-from", str(tmp_path / "base"), "--data", "chat:builtin"]
    assert main([*argv, "--steps", "2", *flags(CHAT), "--out", str(tmp_path / "chat")]) == 0
    out = capsys.readouterr()
    chat = json.loads((tmp_path / "chat" / "run.json").read_text())["chat"]
    assert chat["dropped"] > 0 and chat["kept"] + chat["dropped"] == len(builtin_conversations())
    line = f"dropped {chat['dropped']:,} longer than 193 tokens"
    assert (out.out + out.err).count(line) == 1
    assert "masked loss" in out.err
    # a chat run ends by pointing at tinylm chat, not with raw continuations of nothing
    assert f"next: tinylm chat {tmp_path / 'chat'}" in out.out and "--- sample" not in out.out
    assert any("val_loss" in r for r in records(tmp_path / "chat"))
    _, tokenizer, meta = load_model(tmp_path / "chat")
    assert meta.chat_template_file is not None and "<|end|>" in tokenizer.special_tokens
    val_loss = [r["val_loss"] for r in records(tmp_path / "chat") if "val_loss" in r][-1]
    assert math.isfinite(val_loss)


def test_bad_chat_data_is_one_line_and_exit_2(tmp_path, base, capsys):
    argv = ["train", "--init-from", str(base), "--out", str(tmp_path / "out"), "--quiet"]
    fails_with(capsys, [*argv, "--data", f"chat:{tmp_path / 'missing.jsonl'}"], "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"}]}
    broken.write_text(json.dumps(good) + "\n{not json\n", encoding="utf-8")
    fails_with(capsys, [*argv, "--data", f"chat:{broken}"], f"{broken}:2")
    fails_with(capsys, [*argv, "--data", "chat:"], "names no conversations")
    fails_with(capsys, [*argv, "--data", "chat:builtin", "more.txt"], "one source, alone")
    plain = ["train", "--data", "chat:builtin", "--out", str(tmp_path / "out"), "--quiet"]
    fails_with(capsys, plain, "pass --init-from RUN")
    fails_with(capsys, [*argv, "--data", "chat:builtin", "--tokenizer", "char"], "drop --tokenizer")
    assert not (tmp_path / "out").exists()  # nothing left behind by a refused start
