"""``tinylm train --engine scratch``: a run like any other, continued by either engine.

Independent references: the PyTorch ``GPT`` and ``AdamW`` (the conversion is
checked by round trips through them), and an uninterrupted scratch run (against
which a resumed one must be identical).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tinylm.checkpoint import load_checkpoint
from tinylm.cli.main import main
from tinylm.data.corpus import BUILTIN_WORDS, builtin_words, corpus_from_specs
from tinylm.engines.scratch_convert import (
    adam_from_adamw,
    adamw_from_adam,
    check_scratch_config,
    gpt_from_scratch,
    scratch_from_gpt,
)
from tinylm.errors import SettingError
from tinylm.model import GPT, ModelConfig
from tinylm.run.start import resume_run, start_run
from tinylm.scratch.model import Config, MicroGPT
from tinylm.scratch.train import Adam
from tinylm.tokenizers.char import CharTokenizer

NAMES = (
    "\n".join(
        [
            "emma",
            "olivia",
            "ava",
            "isabella",
            "sophia",
            "mia",
            "amelia",
            "harper",
            "evelyn",
            "abigail",
            "emily",
            "ella",
            "liam",
            "noah",
            "oliver",
        ]
        * 3
    )
    + "\n"
)
FAST = ["--set", "eval_every=3", "--set", "eval_batches=3", "--quiet"]


@pytest.fixture
def names(tmp_path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text(NAMES, encoding="utf-8")
    return path


def _weights(run: Path) -> dict[str, torch.Tensor]:
    config = ModelConfig.from_dict(json.loads((run / "run.json").read_text())["model"])
    gpt = GPT(config).double()
    load_checkpoint(run, gpt)
    return gpt.state_dict()


def test_conversion_round_trips_weights_and_adam_state():
    config = ModelConfig.from_preset("microgpt", vocab_size=7, n_embd=8, n_head=2)
    model = MicroGPT(Config(vocab_size=7, n_embd=8, n_head=2), seed=3)
    adam = Adam(model.parameters(), weight_decay=0.1)
    model.loss([6, 1, 2, 3, 6]).backward()
    adam.step(0.01)
    gpt = gpt_from_scratch(model, config)
    assert gpt.state_dict()["lm_head.weight"].dtype == torch.float64
    optimizer = adamw_from_adam(adam, model, gpt, lr=0.01)
    back = scratch_from_gpt(gpt)
    assert back.weights() == model.weights()
    again = adam_from_adamw(optimizer, back, gpt)
    assert (again.m, again.v, again.t) == (adam.m, adam.v, adam.t)
    assert (again.betas, again.eps, again.weight_decay) == (adam.betas, adam.eps, 0.1)


def test_only_the_microgpt_network_is_accepted():
    check_scratch_config(ModelConfig.from_preset("microgpt", n_layer=2, n_embd=32))
    for change in ({"activation": "gelu"}, {"tie_embeddings": True}, {"n_kv_head": 2}):
        with pytest.raises(Exception, match="scratch engine implements the microgpt"):
            check_scratch_config(ModelConfig.from_preset("microgpt", **change))


@pytest.mark.slow
def test_scratch_run_samples_evaluates_resumes_and_crosses_engines(tmp_path, names, capsys):
    whole, part = tmp_path / "whole", tmp_path / "part"
    common = ["train", "--engine", "scratch", "--data", str(names), *FAST]
    assert main([*common, "--steps", "6", "--out", str(whole)]) == 0
    run = json.loads((whole / "run.json").read_text())
    assert (
        run["engine"] == "scratch" and run["model"]["vocab_size"] == len(set(NAMES) - {"\n"}) + 1
    )  # + BOS
    assert (whole / "loss.png").is_file() and (whole / "ckpt-000006").is_dir()
    losses = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in losses if "loss" in r] == [1, 2, 3, 4, 5, 6]

    # As if stopped after the checkpoint of step 3, then resumed (no --engine needed):
    # the same run, bit for bit.
    shutil.copytree(whole, part)
    shutil.rmtree(part / "ckpt-000006")
    shutil.rmtree(part / "best")
    assert main(["train", "--resume", "--out", str(part), "--quiet"]) == 0
    resumed, straight = _weights(part), _weights(whole)
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)

    capsys.readouterr()
    assert main(["sample", str(whole), "--num", "2", "--max-tokens", "8", "--seed", "0"]) == 0
    assert main(["eval", str(whole), "--data", str(names), "--doc-sep", "line"]) == 0
    assert "perplexity" in capsys.readouterr().out

    # The PyTorch engine continues from the scratch weights, and the scratch engine back.
    torch_run, back = tmp_path / "torch", tmp_path / "back"
    argv = ["train", "--init-from", str(whole), "--data", str(names), "--doc-sep", "line"]
    assert (
        main([*argv, "--steps", "2", "--set", "batch_size=2", *FAST, "--out", str(torch_run)]) == 0
    )
    assert main([*common, "--init-from", str(torch_run), "--steps", "1", "--out", str(back)]) == 0
    assert json.loads((back / "run.json").read_text())["engine"] == "scratch"


def test_settings_the_scalar_loop_cannot_honour_are_refused(tmp_path, names, capsys):
    out = tmp_path / "bad"
    for setting, message in (
        ("batch_size=8", "batch_size must be 1"),
        ("optimizer=muon", "optimizer must be 'adamw'"),
        ("activation=gelu", "activation must be 'relu'"),
    ):
        argv = [
            "train",
            "--engine",
            "scratch",
            "--data",
            str(names),
            "--set",
            setting,
            "--out",
            str(out),
            "--quiet",
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()


@pytest.mark.parametrize(
    ("best", "message"), [([1.0], "is a list"), ("low", "is a string"), (True, "is a boolean")]
)
def test_an_edited_state_json_is_one_line_on_a_scratch_resume(
    tmp_path, names, capsys, best, message
):
    # Read with the PyTorch trainer's own checks; float([1.0]) used to be a traceback.
    run = tmp_path / "run"
    argv = ["train", "--engine", "scratch", "--data", str(names), "--steps", "4", "--out", str(run)]
    assert main([*argv, "--set", "eval_every=2", "--quiet"]) == 0
    state = sorted(run.glob("ckpt-*"))[-1] / "state.json"
    data = json.loads(state.read_text())
    data["extra"]["best_val_loss"] = best
    state.write_text(json.dumps(data))
    capsys.readouterr()
    assert main([*argv[:-4], "--steps", "6", "--out", str(run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best_val_loss" in err[0] and message in err[0], err


TRAIN = "import sys\nfrom tinylm.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"


def test_a_scratch_run_holds_its_folder_lock_until_fit_ends(tmp_path, names):
    """A second training into the folder, from another process while this one fits, is refused."""
    out = tmp_path / "run"
    small = {"steps": 2, "eval_every": 2, "eval_batches": 2}
    trainer = start_run(names, engine="scratch", overrides=small, out_dir=out, progress=False)
    second = [
        *("train", "--engine", "scratch", "--data", str(names), "--steps", "1"),
        *("--out", str(out), "--quiet"),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    refused = []
    evaluate = trainer.evaluate

    def evaluate_while_a_second_training_starts():  # called inside fit, after step 2
        refused.append(
            subprocess.run(
                [sys.executable, "-c", TRAIN, *second], capture_output=True, text=True, env=env
            )
        )
        return evaluate()

    trainer.evaluate = evaluate_while_a_second_training_starts
    trainer.fit()
    assert len(refused) == 1
    err = refused[0].stderr.strip().splitlines()
    assert refused[0].returncode == 2, refused[0].stderr
    assert len(err) == 1 and "another training" in err[0] and f"process {os.getpid()}" in err[0]
    resumed = resume_run(out, overrides={"steps": 3}, progress=False)  # released: free again
    assert resumed.step == 2 and resumed.run_lock is not None
    resumed.run_lock.release()


def test_resuming_with_the_other_engine_is_refused(tmp_path, names, capsys):
    """Either way round: one line naming both engines, and the run left as it was."""
    scratch, torch_run = tmp_path / "scratch", tmp_path / "torch"
    data = ["--data", str(names), "--steps", "2", "--quiet"]
    assert main(["train", "--engine", "scratch", *data, "--out", str(scratch)]) == 0
    tiny = ["--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2"]
    tiny += ["--set", "block_size=8", "--set", "batch_size=2", "--set", "eval_batches=2"]
    assert main(["train", *data, *tiny, "--out", str(torch_run)]) == 0
    for run, trained_by, other in (
        (scratch, "scratch", "pytorch"),
        (torch_run, "pytorch", "scratch"),
    ):
        before = sorted(p.name for p in run.iterdir())
        capsys.readouterr()
        argv = ["train", "--resume", "--engine", other, "--steps", "4", "--out", str(run)]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert f"trained by the {trained_by} engine, not the {other} engine" in err[0]
        assert f"--engine {other}" in err[0]
        with pytest.raises(SettingError, match=f"the {trained_by} engine, not the {other}"):
            resume_run(run, engine=other, overrides={"steps": 4})
        assert sorted(p.name for p in run.iterdir()) == before
        # its own engine, named or not, continues it
        trainer = resume_run(run, engine=trained_by, overrides={"steps": 3}, progress=False)
        assert trainer.step == 2
        trainer.run_lock.release()


def test_builtin_words_fit_the_microgpt_preset():
    words = builtin_words()
    assert len(words) > 2000 and words == sorted(set(words))
    assert all(w.isascii() and w.isalpha() and w.islower() and len(w) > 1 for w in words)
    tokenizer = CharTokenizer.train(words)
    assert tokenizer.vocab_size == ModelConfig.from_preset("microgpt").vocab_size == 27
    assert corpus_from_specs([BUILTIN_WORDS]) == words


def test_scratch_bits_per_byte_equal_the_pytorch_engines_on_non_ascii_text():
    """``loss_sums`` against the converted ``GPT`` scored by ``tinylm.inference.evaluation``.

    The characters take 1 to 4 UTF-8 bytes and BOS takes none, so a bpb that counted
    tokens, or bytes of the wrong ids, or the closing BOS, would differ.
    """
    import math

    from tinylm.inference.evaluation import bits_per_byte, text_sums, token_byte_table
    from tinylm.scratch.train import document_tokens, loss_sums, mean_loss

    tokenizer = CharTokenizer.train("aé€😀 z")
    docs = [tokenizer.encode(text) for text in ("aé€", "😀 za", "zz€é😀")]
    vocab = tokenizer.vocab_size
    config = ModelConfig.from_preset("microgpt", vocab_size=vocab, n_embd=8, n_head=2)
    model = MicroGPT(Config(vocab_size=vocab, n_embd=8, n_head=2), seed=5)
    counts = tokenizer.token_byte_counts()
    nats, tokens, text_nats, text_bytes = loss_sums(model, docs, tokenizer.bos_id, counts)
    assert text_bytes == sum(len(t.encode()) for t in ("aé€", "😀 za", "zz€é😀"))
    assert math.isclose(nats / tokens, mean_loss(model, docs, tokenizer.bos_id), rel_tol=1e-12)

    gpt = gpt_from_scratch(model, config).double()
    table = token_byte_table(tokenizer)
    want_nats, want_bytes = 0.0, 0
    for doc in docs:
        ids = torch.tensor(document_tokens(doc, tokenizer.bos_id, config.block_size))
        logits, _ = gpt(ids[None, :-1])
        logits = logits[0]
        losses = torch.nn.functional.cross_entropy(logits, ids[1:], reduction="none")
        summed, nbytes = text_sums(losses, ids[1:], table)
        want_nats += summed.item()
        want_bytes += int(nbytes)
    assert text_bytes == want_bytes
    assert math.isclose(text_nats, want_nats, rel_tol=1e-9)
    assert math.isclose(
        bits_per_byte(text_nats, text_bytes), want_nats / (math.log(2) * want_bytes), rel_tol=1e-9
    )
