"""`tinylm train`, `tinylm sample` and `tinylm eval`, run the way a user runs them."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fails_with, one_torch_thread
from tinylm.cli.main import main
from tinylm.inference.loading import load_model
from tinylm.tokenizers.char import CharTokenizer

CORPUS = (
    "Beautiful is better than ugly. Explicit is better than implicit. Simple is better "
    "than complex. Complex is better than complicated. Flat is better than nested. "
    "Sparse is better than dense. Readability counts.\n"
) * 12

TINY = [
    "--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2", "--set", "block_size=32",
    "--set", "batch_size=4", "--set", "eval_batches=2", "--set", "sample_tokens=20",
    "--set", "eval_every=5", "--quiet",
]  # fmt: skip


def digest(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` and a hash of its bytes: to prove nothing changed."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "zen.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus) -> Path:
    """A 5-step run of a tiny model, trained once for the module."""
    out = tmp_path_factory.mktemp("runs") / "zen"
    with one_torch_thread():  # module scope: the per-test fixture is not active yet
        code = main(["train", "--data", str(corpus), "--steps", "5", "--out", str(out), *TINY])
    assert code == 0
    return out


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    """A private copy of the trained run, for tests that break or extend it."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


# -- the happy paths --------------------------------------------------------------------


def test_train_writes_checkpoint_metrics_plot_and_cached_data(trained):
    out = trained
    assert (out / "ckpt-000005" / "model.safetensors").is_file()
    assert (out / "best" / "state.json").is_file()
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5]
    evals = [r for r in records if "val_loss" in r]
    assert evals and all(2 < r["val_bpb"] < 10 for r in evals)  # bits/byte, every time
    info = json.loads((out / "run.json").read_text())
    assert info["model"]["n_layer"] == 1 and info["train"]["steps"] == 5
    assert info["tokenizer"] == "char" and Path(info["prepared"]).parent == Path("data")
    assert (out / info["prepared"] / "meta.json").is_file()


def test_train_prints_a_summary_and_samples(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--steps", "2", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "trained 2 steps: val loss" in printed and "bits/byte)" in printed
    assert "--- sample 1 ---" in printed and "--- sample 2 ---" in printed


def test_sample_streams_reproducible_text_after_the_prompt(trained, capsys):
    out = trained
    argv = ["sample", str(out), "--prompt", "Simple", "--num", "2", "--max-tokens", "15"]
    assert main([*argv, "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert main([*argv, "--seed", "3"]) == 0
    assert capsys.readouterr().out == first
    pieces = first.split("\n---\n")
    assert len(pieces) == 2 and all(p.startswith("Simple") for p in pieces)
    assert main(["sample", str(out / "best"), "--temperature", "0", "--max-tokens", "5"]) == 0


def test_sample_weights_choose_the_engines_format(trained, capsys):
    argv = ["sample", str(trained), "--prompt", "Simple", "--temperature", "0"]
    argv += ["--max-tokens", "20"]
    assert main([*argv, "--weights", "float32"]) == 0
    float32 = capsys.readouterr().out
    # float32 is the model's own greedy text, through the plain forward path
    model, tokenizer, _ = load_model(trained, "cpu", require_tokenizer=True)
    start = [tokenizer.bos_id, *tokenizer.encode("Simple")]
    ids = list(model.generate(start, 20, temperature=0, stop_ids=[tokenizer.eos_id]))
    assert float32 == "Simple" + tokenizer.decode(ids) + "\n"
    for weights in ("bfloat16", "int8"):
        assert main([*argv, "--weights", weights]) == 0
        assert capsys.readouterr().out.startswith("Simple")
    fails_with(capsys, [*argv, "--weights", "int4"], "unknown weight format 'int4'")


def test_sample_says_when_int8_runs_without_the_c_kernels(trained, capsys, monkeypatch, tmp_path):
    from tinylm.inference import native_kernels

    argv = ["sample", str(trained), "--prompt", "Simple", "--temperature", "0"]
    argv += ["--max-tokens", "5", "--weights", "int8"]
    assert main(argv) == 0
    with_kernels = capsys.readouterr()
    assert "note:" not in with_kernels.err  # the kernels build here (a C compiler is present)
    monkeypatch.setattr(native_kernels, "_STATUS", None)
    monkeypatch.setenv("TINYLM_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert main(argv) == 0
    without = capsys.readouterr()
    assert without.out == with_kernels.out  # the same greedy text, through torch
    (note,) = [line for line in without.err.splitlines() if line.startswith("note:")]
    assert "int8 weights decode through torch" in note and "no C compiler found" in note


def test_eval_reports_loss_and_perplexity_on_text_and_on_prepared_data(trained, corpus, capsys):
    out = trained
    assert main(["eval", str(out), "--data", str(corpus)]) == 0
    text_line = capsys.readouterr().out
    assert "loss" in text_line and "perplexity" in text_line and "step 5" in text_line
    # The corpus is ASCII in one document: one byte per scored character, none for a BOS
    # (at most one, the closing one, is scored).
    bpb = float(text_line.split("perplexity ")[1].split(", ")[1].split(" bits/byte")[0])
    tokens = int(text_line.split(" over ")[1].split(" tokens")[0].replace(",", ""))
    scored_bytes = int(text_line.split(" tokens (")[1].split(" bytes)")[0].replace(",", ""))
    assert tokens - 1 <= scored_bytes <= tokens and 2 < bpb < 10
    prepared = out / json.loads((out / "run.json").read_text())["prepared"]
    assert main(["eval", str(out), "--data", str(prepared), "--split", "val"]) == 0
    val_line = capsys.readouterr().out
    # The run's last evaluation and a full pass over the same split agree roughly.
    loss = float(val_line.split("loss ")[1].split(",")[0])
    assert 0 < loss < 10


def test_resume_continues_the_run_to_more_steps(run_copy, capsys):
    assert main(["train", "--resume", "--out", str(run_copy), "--steps", "7", *TINY]) == 0
    assert "trained 7 steps" in capsys.readouterr().out
    steps = [
        json.loads(line)["step"]
        for line in (run_copy / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    assert steps == [1, 2, 3, 4, 5, 6, 7]
    assert (run_copy / "ckpt-000007").is_dir()


def test_init_from_fine_tunes_with_the_same_tokenizer(trained, tmp_path, capsys):
    out = trained
    new_text = tmp_path / "more.txt"
    new_text.write_text("Readability counts. Flat is better than dense. " * 30, encoding="utf-8")
    ft = tmp_path / "ft"
    argv = ["train", "--init-from", str(out), "--data", str(new_text), "--out", str(ft)]
    assert main([*argv, "--steps", "3", "--quiet", "--set", "batch_size=4"]) == 0
    capsys.readouterr()
    info = json.loads((ft / "run.json").read_text())
    assert info["init_from"].endswith("ckpt-000005") and info["model"]["n_embd"] == 16
    assert (ft / "ckpt-000003" / "tokenizer.json").read_bytes() == (
        out / "ckpt-000005" / "tokenizer.json"
    ).read_bytes()


def test_prepared_data_is_cached_and_reused(tmp_path, corpus, monkeypatch):
    from tinylm.data import prepare as data_module
    from tinylm.run.data_cache import prepare_cached

    first = prepare_cached([str(corpus)], "char", tmp_path, progress=False)

    def no_prepare(*args, **kwargs):
        raise AssertionError("prepare() ran although the cache had the data")

    monkeypatch.setattr(data_module, "prepare", no_prepare)
    assert prepare_cached([str(corpus)], "char", tmp_path, progress=False) == first
    with pytest.raises(AssertionError):  # another separator (or tokenizer) is another entry
        prepare_cached([str(corpus)], "char", tmp_path, separator="line", progress=False)


def test_toml_config_and_set_layers(tmp_path, corpus):
    config = tmp_path / "run.toml"
    config.write_text("[model]\nn_embd = 24\n[train]\nsteps = 3\nlr = 0.002\n")
    out = tmp_path / "run"
    argv = ["train", "--data", str(corpus), "--config", str(config), "--out", str(out), *TINY]
    assert main([*argv, "--set", "n_embd=32", "--set", "n_head=4"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["model"]["n_embd"] == 32  # --set wins over the file
    assert info["train"]["steps"] == 3 and info["train"]["lr"] == 0.002


# -- bad input: one line, exit 2, nothing overwritten ----------------------------------


def test_empty_corpus(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    out = tmp_path / "run"
    fails_with(capsys, ["train", "--data", str(empty), "--out", str(out), *TINY], "empty")
    assert not (out / "run.json").exists()


def test_corpus_shorter_than_one_block(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("Now is better than never.", encoding="utf-8")
    out = tmp_path / "run"
    fails_with(
        capsys, ["train", "--data", str(short), "--out", str(out), *TINY], "block_size + 1 = 33"
    )
    assert not (out / "run.json").exists()


def test_tokenizer_that_does_not_match_the_prepared_data(trained, tmp_path, capsys):
    out = trained
    prepared = out / json.loads((out / "run.json").read_text())["prepared"]
    other = tmp_path / "other.json"
    CharTokenizer.train("completely different characters: 0123456789").save(other)
    before = digest(prepared)
    argv = [
        "train",
        "--data",
        str(prepared),
        "--tokenizer",
        str(other),
        "--out",
        str(tmp_path / "r"),
    ]
    fails_with(capsys, [*argv, *TINY], "was prepared with tokenizer")
    assert digest(prepared) == before

    from tinylm.data.prepare import prepare

    foreign = tmp_path / "foreign"
    prepare("0123456789 " * 50, _tok(other), foreign, progress=False)
    fails_with(capsys, ["eval", str(out), "--data", str(foreign)], "was prepared with tokenizer")


def _tok(path: Path) -> CharTokenizer:
    from tinylm.tokenizers.formats import load_tokenizer

    return load_tokenizer(path)


def test_unwritable_output_folder(tmp_path, corpus, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    argv = ["train", "--data", str(corpus), "--out", str(blocker / "run"), *TINY]
    fails_with(capsys, argv, "cannot write to output folder")
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_truncated_checkpoint(run_copy, capsys):
    weights = run_copy / "ckpt-000005" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    before = digest(run_copy)
    fails_with(capsys, ["sample", str(run_copy)], "truncated or corrupt")
    fails_with(capsys, ["eval", str(run_copy / "ckpt-000005"), "--data", "x"], "corrupt")
    argv = ["train", "--resume", "--out", str(run_copy), "--steps", "9", *TINY]
    fails_with(capsys, argv, "truncated or corrupt")
    assert digest(run_copy) == before


def test_foreign_checkpoint(tmp_path, capsys):
    foreign = tmp_path / "ckpt"
    foreign.mkdir()
    (foreign / "model.safetensors").write_bytes(b"\x00" * 64)
    (foreign / "state.json").write_text('{"format": "something-else"}', encoding="utf-8")
    before = digest(foreign)
    fails_with(capsys, ["sample", str(foreign)], "not a tinylm checkpoint")
    fails_with(capsys, ["train", "--init-from", str(foreign), *TINY], "not a tinylm checkpoint")
    assert digest(foreign) == before


def test_unknown_set_key_lists_the_valid_keys(tmp_path, corpus, capsys):
    argv = ["train", "--data", str(corpus), "--out", str(tmp_path / "r"), "--set", "layers=2"]
    line = fails_with(capsys, argv, "unknown --set key 'layers'")
    assert "n_layer" in line and "lr" in line
    fails_with(capsys, [*argv[:-1], "lr=fast"], "lr must be a positive number")
    fails_with(capsys, [*argv[:-1], "lr"], "--set wants KEY=VALUE")
    assert not (tmp_path / "r").exists()


def test_existing_run_is_not_clobbered_without_resume(run_copy, corpus, capsys):
    before = digest(run_copy)
    argv = ["train", "--data", str(corpus), "--out", str(run_copy), "--steps", "2", *TINY]
    fails_with(capsys, argv, "already holds a run; pass --resume")
    fails_with(capsys, ["train", "--resume", "--out", str(run_copy), *TINY], "already finished")
    fails_with(
        capsys,
        ["train", "--resume", "--out", str(run_copy), "--set", "n_layer=3"],
        "cannot change model field 'n_layer'",
    )
    assert digest(run_copy) == before


def test_resume_without_a_run(tmp_path, capsys):
    fails_with(capsys, ["train", "--resume", "--out", str(tmp_path / "none")], "nothing to resume")


def test_errors_in_a_real_process_have_no_traceback(run_copy):
    weights = run_copy / "ckpt-000005" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    for args in (["train", "--set", "nope=1"], ["sample", str(run_copy)]):
        result = subprocess.run(
            [sys.executable, "-m", "tinylm.cli.main", *args], capture_output=True, text=True
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tinylm: error:"), result.stderr


def test_a_start_that_failed_before_any_checkpoint_can_be_retried(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", str(corpus), "--out", str(out), "--steps", "3", *TINY]
    fails_with(capsys, [*argv, "--set", "lr=1e9", "--set", "grad_clip=0"], "at step")
    assert (out / "run.json").is_file() and not list(out.glob("ckpt-*"))
    assert main(argv) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[:3] == [1, 2, 3]


def test_an_unencodable_prompt_fails_before_any_output(trained, capsys):
    assert main(["sample", str(trained), "--prompt", "Simple \u20ac"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # not even the prompt
    assert captured.err.startswith("tinylm: error:") and "U+20AC" in captured.err


def test_eval_on_too_little_text_does_not_suggest_changing_the_model(trained, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("Flat is better.", encoding="utf-8")
    line = fails_with(capsys, ["eval", str(trained), "--data", str(short)], "block_size + 1")
    assert "--set" not in line and "give more text" in line


def test_resume_accepts_the_init_from_it_was_started_with(trained, tmp_path, capsys):
    new_text = tmp_path / "more.txt"
    new_text.write_text("Readability counts. Flat is better than dense. " * 30, encoding="utf-8")
    ft = tmp_path / "ft"
    argv = ["train", "--init-from", str(trained), "--data", str(new_text), "--out", str(ft)]
    # the command that trained the base, model settings included, is fine (same values)
    assert main([*argv, "--steps", "2", *TINY]) == 0
    assert main([*argv, "--steps", "3", *TINY, "--resume"]) == 0  # same command + --resume
    assert (ft / "ckpt-000003").is_dir()
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    fails_with(capsys, [*argv[:2], str(other), *argv[3:], "--resume"], "differs from the run's")


def test_init_from_refuses_a_different_shape_and_names_the_models_value(trained, capsys):
    argv = ["train", "--init-from", str(trained), *TINY, "--set", "n_layer=2"]
    fails_with(capsys, argv, "only dropout can be set, not n_layer (the model has n_layer=1)")


@pytest.mark.parametrize("source", ["set", "toml"])
def test_out_dir_from_set_or_toml_is_the_whole_run_folder(tmp_path, corpus, capsys, source):
    out = tmp_path / "elsewhere"
    argv = ["train", "--data", str(corpus), "--steps", "2", *TINY]
    if source == "set":
        argv += ["--set", f"out_dir={out}"]
    else:
        config = tmp_path / "run.toml"
        config.write_text(f'[train]\nout_dir = "{out.as_posix()}"\n', encoding="utf-8")
        argv += ["--config", str(config)]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert main(argv) == 0
    assert f"run folder: {out}" in capsys.readouterr().out
    assert (out / "run.json").is_file() and (out / "ckpt-000002").is_dir()
    assert (out / "data").is_dir() and not (tmp_path / "runs").exists()
    # --out is the dedicated flag: it wins over out_dir
    flag = tmp_path / "flag"
    assert main([*argv[:-2], "--set", f"out_dir={out}-x", "--out", str(flag)]) == 0
    assert (flag / "ckpt-000002").is_dir() and not Path(f"{out}-x").exists()


def test_set_progress_false_is_honoured(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", str(corpus), "--out", str(out), "--steps", "2"]
    argv += [a for a in TINY if a != "--quiet"] + ["--set", "progress=false"]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""
    assert json.loads((out / "run.json").read_text())["train"]["progress"] is False


@pytest.mark.parametrize(
    ("extra", "toml", "message"),
    [
        (["--set", "n_layer=two"], None, "n_layer must be a positive integer, got 'two'"),
        (["--set", "dropout=2"], None, "dropout must be in [0, 1)"),
        (["--steps", "-5"], None, "steps must be a positive integer, got -5"),
        (["--preset", "nope"], None, "unknown model preset 'nope'"),
        (["--set", "n_embd=100", "--set", "n_head=3"], None, "not divisible by n_head 3"),
        ([], "[model\nn_layer = 1\n", "is not valid TOML"),
        ([], '[train]\nlr = "fast"\n', "lr must be a positive number"),
        ([], "[train]\nfoo = 1\n", "[train] key 'foo'"),
        ([], "model = 3\n", "must be a [model] table"),
    ],
)
def test_bad_settings_fail_before_any_data_is_prepared(
    tmp_path, corpus, capsys, monkeypatch, extra, toml, message
):
    from tinylm.data import prepare as data_module

    def no_prepare(*args, **kwargs):
        raise AssertionError("the data was prepared before the settings were checked")

    monkeypatch.setattr(data_module, "prepare", no_prepare)
    out = tmp_path / "run"
    argv = ["train", "--data", str(corpus), "--out", str(out), *TINY, *extra]
    if toml is not None:
        config = tmp_path / "bad.toml"
        config.write_text(toml, encoding="utf-8")
        argv += ["--config", str(config)]
    fails_with(capsys, argv, message)
    assert not out.exists()  # not even an empty run folder is left behind


def test_a_failed_start_removes_only_the_folder_it_created(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    mine = tmp_path / "mine"
    mine.mkdir()
    for out in (tmp_path / "new", mine):
        fails_with(capsys, ["train", "--data", str(empty), "--out", str(out), *TINY], "empty")
    assert not (tmp_path / "new").exists()  # created by the run, empty: removed
    assert mine.is_dir()  # the user's own folder stays


def _interrupt_at(monkeypatch, step: int) -> None:
    """Make the trainer raise KeyboardInterrupt (what Ctrl-C does) before step ``step + 1``."""
    from tinylm.train.trainer import Trainer

    original = Trainer.train_step

    def train_step(self):
        if self.step == step:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def _losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line]


def test_ctrl_c_says_where_it_stopped_and_resume_repeats_the_run_exactly(
    tmp_path, corpus, capsys, monkeypatch
):
    common = ["--data", str(corpus), "--steps", "8", "--set", "checkpoint_every=3", *TINY]
    whole = tmp_path / "whole"
    assert main(["train", *common, "--out", str(whole)]) == 0

    run = tmp_path / "run"
    with monkeypatch.context() as mp:
        _interrupt_at(mp, 5)
        capsys.readouterr()
        assert main(["train", *common, "--out", str(run)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "tinylm: interrupted"
    assert "stopped at step 5 of 8" in err[0] and "ckpt-000003 (step 3)" in err[0]
    assert f"tinylm train --out {run} --resume" in err[0]

    assert main(["train", *common, "--out", str(run), "--resume"]) == 0
    assert _losses(run) == _losses(whole)  # bit for bit on CPU, steps 4-5 redone


def test_ctrl_c_before_the_first_checkpoint_says_so(tmp_path, corpus, capsys, monkeypatch):
    _interrupt_at(monkeypatch, 1)
    argv = ["train", "--data", str(corpus), "--steps", "8", "--out", str(tmp_path / "r"), *TINY]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "stopped at step 1 of 8; no checkpoint was saved yet" in err


def test_an_over_long_prompt_warns_in_one_line_without_python_source(trained, capsys):
    prompt = "Beautiful is better than ugly. " * 3  # BOS + 93 characters, block_size 32
    assert main(["sample", str(trained), "--prompt", prompt, "--max-tokens", "3"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinylm: warning: prompt has 94 tokens"), err


def test_sample_best_of_a_run_whose_best_folder_was_lost_is_an_error(run_copy, capsys):
    shutil.rmtree(run_copy / "best")
    latest = sorted(run_copy.glob("ckpt-*"))[-1]
    for old in sorted(run_copy.glob("ckpt-*"))[:-1]:
        shutil.rmtree(old)  # the best step's own folder is gone too
    state = json.loads((latest / "state.json").read_text())
    state["best"] = {"step": 2, "val_loss": 1.0}  # an earlier step was best
    (latest / "state.json").write_text(json.dumps(state))
    fails_with(capsys, ["sample", str(run_copy), "--best"], "best checkpoint of")
    fails_with(capsys, ["eval", str(run_copy), "--best", "--data", str(run_copy)], "(step 2,")


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KB file system of its own (tmpfs), where a checkpoint does not fit."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root in a privileged container): "
                    f"{done.stderr.strip()}")  # fmt: skip
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_leaves_no_temporary_files(small_disk, corpus, capsys):
    out = small_disk / "run"
    argv = ["train", "--data", str(corpus), "--steps", "5", "--out", str(out), *TINY]
    argv += ["--set", "n_embd=64"]  # about 200 KB of weights and optimizer state
    message = fails_with(capsys, argv, "no space left on the device")
    assert f"cannot write {out}" in message and "bytes needed" in message
    # no half-written leftovers (the run folder's lock file is permanent, and empty of data)
    assert not [p for p in small_disk.rglob(".*") if p.name != ".lock"]
