"""One writer per run folder (issue 13, defect 2): a second training is refused.

Two real processes: a child takes the folder's lock the way a training does and
waits; the CLI in this process is then refused in one line and writes nothing.
Killed with SIGKILL, the child's lock goes with it and the folder is free again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tinylm.cli.main import main
from tinylm.run.lock import lock_run_folder

HOLD = (
    "import sys, time\n"
    "from tinylm.run.lock import lock_run_folder\n"
    "lock = lock_run_folder(sys.argv[1])\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def holder(tmp_path):
    """A child process holding the lock of ``tmp_path / 'run'``."""
    folder = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        yield folder, child
    finally:
        child.kill()
        child.wait()


def test_a_second_training_into_a_locked_folder_is_refused(holder, tmp_path, capsys):
    folder, child = holder
    corpus = tmp_path / "text.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 50, encoding="utf-8")
    before = sorted(p.name for p in folder.iterdir())
    code = main(["train", "--data", str(corpus), "--out", str(folder), "--steps", "2", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "another training" in err[0], err
    assert f"process {child.pid}" in err[0]
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


def test_the_lock_dies_with_its_process(holder):
    folder, child = holder
    with pytest.raises(Exception, match="another training"):
        lock_run_folder(folder)
    child.send_signal(signal.SIGKILL)
    child.wait()
    lock = lock_run_folder(folder)  # no stale lock after kill -9
    assert lock.held
    lock.release()


def test_the_lock_is_released_when_fit_ends(tmp_path):
    from tinylm.run.start import resume_run, start_run

    corpus = tmp_path / "text.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 50, encoding="utf-8")
    tiny = {"n_layer": 1, "n_embd": 16, "n_head": 2, "block_size": 16, "batch_size": 2}
    trainer = start_run(
        corpus, overrides={**tiny, "steps": 2}, out_dir=tmp_path / "r", progress=False
    )
    with pytest.raises(Exception, match="another training"):
        start_run(corpus, overrides=tiny, out_dir=tmp_path / "r", progress=False)
    trainer.fit()
    resumed = resume_run(tmp_path / "r", overrides={"steps": 3}, progress=False)
    assert resumed.step == 2
    assert Path(tmp_path / "r" / ".lock").exists()
