"""The run layer against the CLI: each ``tinylm train`` form and its notebook equivalent.

Each form runs twice, once through ``tinylm train`` and once through
``tinylm.run``, into separate folders; the two must record the same losses (bit
for bit: one thread, same seed) and leave the same files, with the same prepared
data and the same weights. Both engines: the defaults a call leaves out (data,
preset, document separator) are the engine's, whichever way it is called.
docs/api.md shows these same calls, each beside its command line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from conftest import metric_records, one_torch_thread, tensors_digest
from tinylm.cli.main import main
from tinylm.errors import SettingError, TinylmError
from tinylm.run.folder import check_same_run
from tinylm.run.settings import layer_settings
from tinylm.run.start import init_from, resume_run, start_run

pytestmark = pytest.mark.slow  # a few seconds per form: two tiny training runs each

CORPUS = (
    "Beautiful is better than ugly. Explicit is better than implicit. Simple is better "
    "than complex. Complex is better than complicated. Flat is better than nested.\n"
) * 12
TINY = {
    "n_layer": 1,
    "n_embd": 16,
    "n_head": 2,
    "block_size": 32,
    "batch_size": 4,
    "eval_batches": 2,
    "sample_tokens": 20,
    "eval_every": 2,
}


def as_flags(settings: dict) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def cli(*argv: str) -> None:
    assert main(["train", *argv, "--quiet"]) == 0


def fit(trainer) -> None:
    trainer.fit()


def metrics(run: Path) -> list[dict]:
    """Every loss and validation record (timings and samples aside, which may differ)."""
    return metric_records(run, ("step", "loss", "val_loss", "lr", "grad_norm"))


def files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}


def weights(run: Path) -> dict[str, str]:
    """A hash of every checkpoint's tensors (not of the file: its metadata order varies)."""
    paths = sorted(run.rglob("model.safetensors"))
    return {str(p.relative_to(run)): tensors_digest(p) for p in paths}


def prepared(run: Path) -> dict[str, str]:
    """A hash of every file of the run's prepared data (the token arrays, meta, tokenizer)."""
    folder = run / json.loads((run / "run.json").read_text())["prepared"]
    return {
        str(path.relative_to(run)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def run_json(run: Path) -> dict:
    info = json.loads((run / "run.json").read_text())
    info["train"].pop("out_dir")
    return info


def assert_same_run(by_cli: Path, by_library: Path) -> None:
    assert metrics(by_cli) == metrics(by_library)
    assert any("val_loss" in r for r in metrics(by_cli))
    assert files(by_cli) == files(by_library)
    assert weights(by_cli) == weights(by_library) and weights(by_cli)
    assert prepared(by_cli) == prepared(by_library) and prepared(by_cli)
    assert run_json(by_cli) == run_json(by_library)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "zen.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory, corpus) -> Path:
    """A finished 4-step run (checkpoints at 2 and 4), made through the library."""
    out = tmp_path_factory.mktemp("runs") / "base"
    with one_torch_thread():
        fit(start_run(corpus, overrides={**TINY, "steps": 4}, out_dir=out, progress=False))
    return out


def test_a_plain_run(tmp_path, corpus):
    cli("--data", str(corpus), "--steps", "3", *as_flags(TINY), "--out", str(tmp_path / "cli"))
    overrides = {**TINY, "steps": 3}
    fit(start_run(corpus, overrides=overrides, out_dir=tmp_path / "lib", progress=False))
    assert_same_run(tmp_path / "cli", tmp_path / "lib")


def test_a_scratch_run_with_the_engines_defaults(tmp_path):
    """No preset or separator given: microgpt, one document per line, through either door."""
    names = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "liam", "noah", "ella"]
    text = tmp_path / "names.txt"
    text.write_text("\n".join(names * 4) + "\n", encoding="utf-8")
    small = {"n_embd": 8, "n_head": 2, "steps": 3, "eval_every": 3, "eval_batches": 3}
    by_cli = ["--engine", "scratch", "--data", str(text), *as_flags(small)]
    cli(*by_cli, "--out", str(tmp_path / "cli"))
    trainer = start_run(
        text, engine="scratch", overrides=small, out_dir=tmp_path / "lib", progress=False
    )
    assert {trainer.tokenizer.decode(doc) for doc in trainer.train_docs} <= set(names)
    fit(trainer)
    assert_same_run(tmp_path / "cli", tmp_path / "lib")
    info = run_json(tmp_path / "lib")
    assert (info["engine"], info["preset"], info["model"]["n_embd"]) == ("scratch", "microgpt", 8)


def test_a_config_files_preset_is_honoured_by_the_scratch_engine(tmp_path, corpus):
    """The engine's default preset sits below the file's, as ``small`` does for PyTorch."""
    config = tmp_path / "run.toml"
    config.write_text('[model]\npreset = "llama"\n')
    assert layer_settings(None, config, default_preset="microgpt").preset == "llama"
    assert layer_settings(None, None, default_preset="microgpt").preset == "microgpt"
    with pytest.raises(TinylmError, match="microgpt network only"):
        start_run(corpus, engine="scratch", config_file=config, out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_tokenizer_preset_config_file_and_overrides(tmp_path, corpus):
    config = tmp_path / "run.toml"
    config.write_text("[model]\nn_embd = 24\nn_head = 2\n[train]\nsteps = 3\nlr = 0.002\n")
    layers = {**TINY, "n_embd": 32, "n_kv_head": 2}  # overrides win over the file
    cli(
        "--data", str(corpus), "--tokenizer", "bpe:300", "--preset", "llama",
        "--config", str(config), *as_flags(layers), "--out", str(tmp_path / "cli"),
    )  # fmt: skip
    trainer = start_run(
        corpus,
        tokenizer="bpe:300",
        preset="llama",
        config_file=config,
        overrides=layers,
        out_dir=tmp_path / "lib",
        progress=False,
    )
    assert trainer.model.config.n_embd == 32 and trainer.config.lr == 0.002
    assert trainer.tokenizer.vocab_size == 300
    fit(trainer)
    assert_same_run(tmp_path / "cli", tmp_path / "lib")


def test_resume_an_interrupted_run(tmp_path, base):
    for name in ("cli", "lib"):  # both lose the last checkpoint: stopped after step 2
        shutil.copytree(base, tmp_path / name)
        shutil.rmtree(tmp_path / name / "ckpt-000004")
    cli("--resume", "--out", str(tmp_path / "cli"), "--doc-sep", "eot")  # its own: fine
    trainer = resume_run(tmp_path / "lib", progress=False)
    assert trainer.step == 2
    fit(trainer)
    assert_same_run(tmp_path / "cli", tmp_path / "lib")
    assert metrics(tmp_path / "lib") == metrics(base)  # and both repeat the whole run


def test_extend_a_finished_run(tmp_path, base):
    for name in ("cli", "lib"):
        shutil.copytree(base, tmp_path / name)
    cli("--resume", "--out", str(tmp_path / "cli"), "--steps", "6")
    fit(resume_run(tmp_path / "lib", overrides={"steps": 6}, progress=False))
    assert_same_run(tmp_path / "cli", tmp_path / "lib")
    assert (tmp_path / "lib" / "ckpt-000006").is_dir()


def test_fine_tune_with_init_from(tmp_path, base):
    more = tmp_path / "more.txt"
    more.write_text("Flat is better than nested. Simple is better. " * 30, encoding="utf-8")
    cli("--init-from", str(base), "--data", str(more), "--steps", "2", "--set", "batch_size=4",
        "--set", "eval_batches=2", "--out", str(tmp_path / "cli"))  # fmt: skip
    overrides = {"steps": 2, "batch_size": 4, "eval_batches": 2}
    fit(init_from(base, more, overrides=overrides, out_dir=tmp_path / "lib", progress=False))
    assert_same_run(tmp_path / "cli", tmp_path / "lib")
    assert run_json(tmp_path / "lib")["init_from"].endswith("ckpt-000004")


@pytest.mark.parametrize(
    ("call", "setting", "reason"),
    [
        (lambda out, c: start_run(c, out_dir=out, overrides=TINY), "out_dir", "run_exists"),
        (lambda out, c: resume_run(out), "steps", "run_finished"),
        (lambda out, c: resume_run(out, overrides={"n_layer": 2}), "n_layer", None),
        (lambda out, c: resume_run(out.parent / "none"), "resume", "nothing_to_resume"),
        (lambda out, c: resume_run(out, data="other.txt"), "data", "differs_from_run"),
        (lambda out, c: resume_run(out, engine="scratch"), "engine", "resume_changes_engine"),
        (lambda out, c: resume_run(out, engine="jax"), "engine", "unknown_engine"),
        (lambda out, c: resume_run(out, separator="line"), "separator", "differs_from_run"),
        (lambda out, c: init_from(out, c, overrides={"n_embd": 8}), "init_from", None),
        (lambda out, c: init_from(out, c, overrides={"layers": 2}), "overrides", "unknown_key"),
    ],
)
def test_the_run_folder_rules_name_the_setting(
    tmp_path, base, corpus, monkeypatch, call, setting, reason
):
    monkeypatch.chdir(tmp_path)  # where a default runs/ folder would go
    run = Path(shutil.copytree(base, tmp_path / "run"))
    with pytest.raises(SettingError) as caught:
        call(run, corpus)
    assert caught.value.setting == setting
    assert reason is None or caught.value.reason == reason
    assert "--" not in str(caught.value)  # the library's words: no flags
    assert metrics(run) == metrics(base)  # the run is left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # and nothing else made


def test_settings_layers_later_wins(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('preset = "llama"\nlr = 0.1\n[model]\nn_layer = 3\n[train]\nsteps = 9\n')
    settings = layer_settings(None, config, {"n_layer": 2, "lr": 0.5})
    assert settings.preset == "llama"
    assert settings.model == {"n_layer": 2}
    assert settings.train == {"lr": 0.5, "steps": 9}
    assert layer_settings("small", config).preset == "small"  # a named preset wins


def test_the_retired_attention_setting_is_routed_and_restates_the_one_switch(tmp_path):
    """``--set attention=...`` and ``[model] attention`` still reach the model config; on
    resume, either spelling restates a run's switch in the spelling of either version."""
    config = tmp_path / "c.toml"
    config.write_text('[model]\nattention = "explicit"\n')
    assert layer_settings(None, config).model == {"attention": "explicit"}
    assert layer_settings(None, None, {"attention": "fused"}).model == {"attention": "fused"}
    with pytest.raises(SettingError) as caught:
        layer_settings(None, None, {"attentoin": "fused"})
    assert "attention" not in str(caught.value).split("valid keys are")[1]  # not advertised

    new_run = {"model": {"kernels": "explicit"}}
    old_run = {"model": {"attention": "explicit", "kernels": "fused"}}  # read as explicit
    for run, same in [
        (new_run, {"attention": "explicit"}),
        (new_run, {"kernels": "explicit"}),
        (old_run, {"attention": "explicit"}),
        (old_run, {"kernels": "fused"}),  # the run's own words
        (old_run, {"kernels": "explicit"}),  # what they mean now
    ]:
        check_same_run(run, tmp_path, same, {})
    for run, changed in [
        (new_run, {"attention": "fused"}),
        (new_run, {"kernels": "fused"}),
        (old_run, {"attention": "fused"}),
    ]:
        with pytest.raises(SettingError, match="cannot change model field"):
            check_same_run(run, tmp_path, changed, {})


def test_an_old_run_with_an_attention_switch_resumes_with_one_note(tmp_path, capsys):
    """A run folder as an earlier tinylm wrote it (``attention`` beside ``kernels`` in
    run.json and every config.json) resumes; the note is one line, said once."""
    corpus = tmp_path / "zen.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    run = tmp_path / "run"
    with one_torch_thread():
        cli("--data", str(corpus), "--steps", "2", "--out", str(run), *as_flags(TINY))
    for path in [run / "run.json", *run.rglob("config.json")]:  # what the old version wrote
        info = json.loads(path.read_text())
        info["model"]["attention"] = "explicit"
        path.write_text(json.dumps(info))
    capsys.readouterr()
    with one_torch_thread():
        cli("--out", str(run), "--resume", "--steps", "4", "--set", "attention=explicit")
    notes = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert notes == [
        "tinylm: warning: model setting attention=explicit with kernels=fused is read as "
        "kernels=explicit: attention and the other layers share one switch now, kernels "
        "(explicit: the written-out formulas, fused: torch's kernels)"
    ]
    model = json.loads((run / "run.json").read_text())["model"]
    assert model["kernels"] == "explicit" and "attention" not in model  # saved as read
    assert metrics(run)[-1]["step"] == 4
