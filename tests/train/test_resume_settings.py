"""A resume trains with the settings it logs (issue 23, item 2).

``tinylm train --resume --set lr=1e-2`` wrote the new rate to ``metrics.jsonl``
but trained with the old one: loading the optimiser's state dict put back the
saved hyperparameters, and the schedule scaled the saved peak rate. Here the
rate every group actually steps with is read off the optimiser at each step and
held against the logged rate and the configured ratios, and the weights against
a resume without the change.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import torch

from conftest import one_torch_thread
from tinylm.run.start import resume_run, start_run

pytestmark = pytest.mark.slow

CORPUS = "Now is better than never. Although never is often better than right now.\n" * 20
TINY = {
    "n_layer": 1,
    "n_embd": 16,
    "n_head": 2,
    "block_size": 32,
    "batch_size": 4,
    "eval_batches": 1,
    "sample_every": 0,
    "eval_every": 2,
    "checkpoint_every": 2,
    "steps": 4,
    "warmup_steps": 1,
}


@pytest.fixture(scope="module", params=["adamw", "muon"])
def interrupted(request, tmp_path_factory) -> Path:
    """A 4-step run stopped after its step-2 checkpoint."""
    root = tmp_path_factory.mktemp(request.param)
    corpus = root / "text.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    out = root / "run"
    with one_torch_thread():
        overrides = {**TINY, "optimizer": request.param}
        start_run(corpus, overrides=overrides, out_dir=out, progress=False).fit()
    shutil.rmtree(out / "ckpt-000004")
    return out


def _resume(run: Path, copy: Path, overrides: dict) -> tuple[list[dict], list[dict], dict]:
    """Resume a copy of ``run``: (rate of each group at each step, step records, weights)."""
    shutil.copytree(run, copy)
    with one_torch_thread():
        trainer = resume_run(copy, overrides=overrides, progress=False)
        used: list[dict] = []
        real_step = trainer.optimizer.step

        def recording_step(*args, **kwargs):
            used.append({g.get("name", "all"): g["lr"] for g in trainer.optimizer.param_groups})
            return real_step(*args, **kwargs)

        trainer.optimizer.step = recording_step
        records: list[dict] = []
        trainer.callbacks.append(type("Log", (), {"on_step": lambda s, t, r: records.append(r)})())
        trainer.fit()
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    return used, records, {"trainer": trainer, "weights": weights}


def test_a_new_lr_on_resume_is_the_lr_trained_with(interrupted, tmp_path):
    used, records, got = _resume(interrupted, tmp_path / "new", {"lr": 2e-2})
    _, _, plain = _resume(interrupted, tmp_path / "plain", {})
    trainer = got["trainer"]
    assert trainer.config.lr == 2e-2
    assert [r["step"] for r in records] == [3, 4]
    for rates, record in zip(used, records, strict=True):
        adamw = [rate for name, rate in rates.items() if not name.startswith("muon")]
        assert adamw and all(rate == pytest.approx(record["lr"]) for rate in adamw)
        if "muon" in rates:  # Muon's matrices keep their own rate, on the same schedule
            ratio = trainer.config.muon_lr / trainer.config.lr
            assert rates["muon"] == pytest.approx(record["lr"] * ratio)
    changed = [
        k for k in plain["weights"] if not torch.equal(plain["weights"][k], got["weights"][k])
    ]
    assert changed, "the weights are bit-identical to a resume without the new lr"
    assert any(change.startswith("lr ") and "0.02" in change for change in trainer.resume_changes)
    assert plain["trainer"].resume_changes == []


def test_the_change_is_said_when_fit_starts(interrupted, tmp_path):
    from tinylm.train.callbacks import ConsoleReporter

    shutil.copytree(interrupted, tmp_path / "run")
    with one_torch_thread():
        trainer = resume_run(tmp_path / "run", overrides={"lr": 0.011}, progress=False)
        stream = io.StringIO()
        trainer.callbacks.append(ConsoleReporter(file=stream))
        trainer.fit()
    lines = [line for line in stream.getvalue().splitlines() if "resumed with new settings" in line]
    assert len(lines) == 1 and "lr 0.003 -> 0.011" in lines[0], lines
