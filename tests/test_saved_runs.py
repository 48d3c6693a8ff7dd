"""Run folders on disk: what ``read_checkpoint_meta`` says about one, and old ones still work.

``fixtures/run_v1`` was written by tinylm before the checkpoint package and
``tinylm.run_layout`` existed (``fixtures/make_run_v1.py`` says how), so these
tests hold today's reader to files it did not write itself.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from tinylm.checkpoint import CheckpointMeta, read_checkpoint_meta, save_checkpoint
from tinylm.inference.loading import load_model
from tinylm.model import GPT, ModelConfig
from tinylm.run.start import resume_run
from tinylm.tokenizers.char import CharTokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_RUN = FIXTURES / "run_v1"

FIELDS = {
    "path": Path,
    "step": int,
    "model_config": dict,
    "train_config": dict,
    "metrics": dict,
    "extra": dict,
    "state": dict,
    "tokenizer_file": Path,
    "chat_template_file": (Path, type(None)),  # None: not a chat model
    "weights": str,  # float32: what training writes (tinylm quantize writes int8, bfloat16)
}


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_record_has_typed_fields_read_from_the_files():
    """Each field against the JSON it comes from, read here independently."""
    meta = read_checkpoint_meta(OLD_RUN)  # a run folder means its latest checkpoint
    assert isinstance(meta, CheckpointMeta)
    assert [f.name for f in dataclasses.fields(meta)] == list(FIELDS)
    for name, kind in FIELDS.items():
        value = getattr(meta, name)
        assert isinstance(value, kind) and not isinstance(value, bool), name
    folder = OLD_RUN / "ckpt-000004"
    state, config = _json(folder / "state.json"), _json(folder / "config.json")
    assert meta.path == folder and meta.step == state["step"] == 4
    assert meta.model_config == config["model"] and meta.model_config["n_embd"] == 8
    assert meta.train_config == config["train"] and meta.train_config["steps"] == 4
    assert meta.metrics == state["metrics"] and isinstance(meta.metrics["val_loss"], float)
    assert (
        meta.extra
        == state["extra"]
        == {"best_val_loss": state["best"]["val_loss"], "world_size": 1}
    )
    assert meta.state == state and meta.state["format"] == "tinylm-checkpoint"
    assert meta.tokenizer_file == folder / "tokenizer.json" and meta.tokenizer_file.is_file()
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.step = 5  # type: ignore[misc]


def test_what_a_checkpoint_lacks_is_none_in_the_record(tmp_path):
    """Saved without a config, a train config or a tokenizer: those fields are None."""
    folder = save_checkpoint(tmp_path / "bare", torch.nn.Linear(2, 3), None, 9)
    meta = read_checkpoint_meta(folder)
    assert (meta.model_config, meta.train_config, meta.tokenizer_file) == (None, None, None)
    assert (meta.step, meta.metrics, meta.extra) == (9, {}, {})


def test_the_record_of_a_checkpoint_saved_today_rebuilds_its_model(tmp_path):
    config = ModelConfig.from_preset("small", vocab_size=11, block_size=8, n_layer=1, n_embd=8)
    torch.manual_seed(0)
    model = GPT(config)
    tokenizer = CharTokenizer.train("abcdefg")
    folder = save_checkpoint(
        tmp_path / "c", model, None, 12, tokenizer=tokenizer, metrics={"val_loss": 1.25}
    )
    meta = read_checkpoint_meta(folder)
    assert ModelConfig.from_dict(meta.model_config) == config
    assert meta.metrics == {"val_loss": 1.25} and meta.step == 12
    assert CharTokenizer.from_dict(_json(meta.tokenizer_file)).chars == tokenizer.chars


def test_an_old_run_folder_loads_its_latest_and_best():
    with pytest.warns(UserWarning, match="read as kernels=fused"):  # the old spelling, noted
        model, tokenizer, meta = load_model(OLD_RUN)
        best_model, _, best = load_model(OLD_RUN, which="best")
    assert meta.step == best.step == 4 and best.path == OLD_RUN / "best"
    assert tokenizer.vocab_size == model.config.vocab_size == 17
    for (name, ours), theirs in zip(
        model.state_dict().items(), best_model.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs), name


def test_an_old_run_folder_resumes_where_its_writer_would_have(tmp_path):
    """Extended from step 4 to 6, it repeats the losses the old code itself recorded."""
    run = Path(shutil.copytree(OLD_RUN, tmp_path / "run"))
    expected = _json(FIXTURES / "run_v1_expected.json")
    with pytest.warns(UserWarning, match="read as kernels=fused"):  # the old spelling, noted
        trainer = resume_run(run, overrides={"steps": expected["resumed_to"]}, progress=False)
        assert trainer.step == 4
        trainer.fit()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = {str(r["step"]): r["loss"] for r in records if "loss" in r and r["step"] > 4}
    assert losses == pytest.approx(expected["losses"], rel=1e-5, abs=0)
    assert read_checkpoint_meta(run).step == 6 and (run / "ckpt-000006").is_dir()
    assert not (run / "ckpt-000004").exists()  # keep_last=1, as the run was started
