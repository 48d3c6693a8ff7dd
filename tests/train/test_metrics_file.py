"""metrics.jsonl after a crash: a torn last line is dropped on resume, not glued onto."""

from __future__ import annotations

import json

from tinylm.train.metrics import MetricsLogger, read_metrics


def test_a_torn_last_line_is_dropped_when_a_run_resumes(tmp_path):
    path = tmp_path / "metrics.jsonl"
    whole = [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.25}]
    torn = '{"step": 3, "lo'  # killed in the middle of a write
    path.write_text("".join(json.dumps(r) + "\n" for r in whole) + torn, encoding="utf-8")
    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.truncate_after(2)  # what a resume from step 2 does
    logger.log({"step": 3, "loss": 2.0})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [*whole, {"step": 3, "loss": 2.0}]


def test_lines_that_are_not_step_records_are_skipped_when_read(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "loss": 1.5}\n[1, 2]\n{"loss": 3}\n{"step": "x"}\n\xff\xfe\n')
    assert read_metrics(path) == [{"step": 1, "loss": 1.5}]
    MetricsLogger(tmp_path, tensorboard=False).truncate_after(5)
    assert path.read_text(encoding="utf-8") == '{"step": 1, "loss": 1.5}\n'
