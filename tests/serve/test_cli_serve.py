"""``tinylm serve`` as a user runs it, and how it finds the runs it is given."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from tinylm.cli.main import main
from tinylm.cli.serve_cmds import _serve_until_interrupted
from tinylm.errors import TinylmError
from tinylm.serve.served import find_runs, load_run, unique_names
from tinylm.serve.server import InspectorServer

REPO = Path(__file__).resolve().parents[2]


def test_a_folder_of_runs_stands_for_each_run_inside(runs_root):
    assert find_runs([runs_root]) == [runs_root / "alpha", runs_root / "beta"]
    assert find_runs([runs_root / "beta", runs_root / "alpha"]) == [
        runs_root / "beta",
        runs_root / "alpha",
    ]


def test_a_checkpoint_folder_is_served_with_its_runs_metrics(runs_root):
    checkpoint = runs_root / "alpha" / "ckpt-000060"
    assert find_runs([checkpoint]) == [checkpoint]
    run = load_run("alpha", checkpoint)
    assert run.run_dir == runs_root / "alpha" and run.meta.step == 60


def test_names_are_folder_names_made_unique():
    paths = [Path("a/small"), Path("b/small"), Path("c/tiny"), Path("c/tiny")]
    assert unique_names(paths) == ["a/small", "b/small", "c/tiny", "c/tiny-2"]


def test_what_is_not_a_run_is_an_error(tmp_path):
    with pytest.raises(TinylmError, match="does not exist"):
        find_runs([tmp_path / "missing"])
    with pytest.raises(TinylmError, match="not a run, a checkpoint or a folder of runs"):
        find_runs([tmp_path])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-run"], "run missing-run does not exist"),
        (["--port", "70000", "x"], "--port must be between 0 and 65535"),
        (["--max-new-tokens", "0", "x"], "--max-new-tokens must be at least 1"),
        (["--threads", "0", "x"], "--threads must be at least 1"),
        (["--weights", "int4", "x"], "unknown --weights 'int4'; choose one of float32, bfloat16"),
        (["run\x1b[31mred\nline"], "run run\\x1b[31mred\\nline does not exist"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error: ") and message in err and err.count("\n") == 1


def test_no_run_and_no_runs_folder_says_what_to_do(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["serve"]) == 2
    assert "train one with `tinylm train`" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_starts_answers_and_stops_on_ctrl_c(runs_root):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "tinylm.cli.main", "serve", str(runs_root), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--host", "0.0.0.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # As from a terminal: a job started in the background of a script (as CI may
        # run this suite) inherits SIGINT ignored, and Python then never raises
        # KeyboardInterrupt. A user's Ctrl-C reaches a foreground process.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("tinylm inspector: http://0.0.0.0:"), line
        port = int(line.split(":")[3].split("/")[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=30) as response:
            names = [run["name"] for run in json.load(response)["runs"]]
        assert names == ["alpha", "beta"]
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"loaded alpha from {runs_root / 'alpha'}" in err
    assert "warning: listening on 0.0.0.0: anyone who can reach this machine" in err
    assert "Traceback" not in err


def test_ctrl_c_stops_the_server_through_a_flag_not_an_exception(api):
    """SIGINT ends the serving loop without a KeyboardInterrupt (which Python drops when it
    lands in a weakref callback or a finaliser), and the previous handler comes back."""
    server = InspectorServer(api, "127.0.0.1", 0)
    answers: list[str] = []

    def ask_then_interrupt() -> None:
        with urllib.request.urlopen(server.url + "api/runs", timeout=30) as response:
            answers.extend(run["name"] for run in json.load(response)["runs"])
        os.kill(os.getpid(), signal.SIGINT)

    def outer_handler(signum, frame):
        raise AssertionError("SIGINT reached the handler that was there before serving")

    previous = signal.signal(signal.SIGINT, outer_handler)
    try:
        threading.Thread(target=ask_then_interrupt, daemon=True).start()
        _serve_until_interrupted(server)
        assert signal.getsignal(signal.SIGINT) is outer_handler
    finally:
        signal.signal(signal.SIGINT, previous)
        server.server_close()
    assert answers == ["alpha", "beta"]


def test_a_run_that_fails_to_load_is_one_line_with_no_loading_line_before(
    runs_root, tmp_path, capsys
):
    import shutil

    good = shutil.copytree(runs_root / "alpha", tmp_path / "good")
    bad = shutil.copytree(runs_root / "beta", tmp_path / "bad\x1b]0;title\x07")
    for weights in bad.glob("ckpt-*/model.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])  # truncated
    assert main(["serve", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error: ") and err.count("\n") == 1, err
    assert "\x1b" not in err and "\x07" not in err and "bad\\x1b]0;title\\x07" in err


def test_the_server_uses_half_the_cpus_it_may_run_on(monkeypatch):
    from tinylm.cli import serve_cmds

    monkeypatch.setattr(serve_cmds, "default_workers", lambda: 16)
    assert serve_cmds.default_threads() == 8
    monkeypatch.setattr(serve_cmds, "default_workers", lambda: 1)
    assert serve_cmds.default_threads() == 1
