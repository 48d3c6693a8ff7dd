"""The Trainer: exact resume, gradient accumulation, NaN handling, files, config."""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tinylm.checkpoint import load_checkpoint
from tinylm.data.batches import StepBatches
from tinylm.errors import TinylmError
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.callbacks import Callback
from tinylm.train.config import TrainConfig
from tinylm.train.trainer import Trainer, losses

TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good "
    "fortune, must be in want of a wife. However little known the feelings or views of "
    "such a man may be on his first entering a neighbourhood, this truth is so well fixed "
    "in the minds of the surrounding families, that he is considered as the rightful "
    "property of some one or other of their daughters.\n"
) * 8


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    return CharTokenizer.train(TEXT)


@pytest.fixture(scope="module")
def splits(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(tokenizer.encode_document(TEXT), dtype=np.uint16)
    cut = int(len(ids) * 0.9)
    return ids[:cut], ids[cut:]


def make_model(tokenizer, seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    fields = {"n_layer": 1, "n_embd": 16, "n_head": 2, "block_size": 16, **overrides}
    return GPT(ModelConfig.from_preset("small", vocab_size=tokenizer.vocab_size, **fields))


def make_config(**overrides) -> TrainConfig:
    fields = {
        "steps": 6,
        "batch_size": 4,
        "warmup_steps": 2,
        "eval_every": 3,
        "eval_batches": 2,
        "sample_tokens": 8,
        "out_dir": None,
        "progress": False,
        **overrides,
    }
    return TrainConfig(**fields)


def make_trainer(tokenizer, splits, config: TrainConfig, seed: int = 0, **model_fields):
    train, val = splits
    return Trainer(make_model(tokenizer, seed, **model_fields), train, val, tokenizer, config)


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# -- exactness --------------------------------------------------------------------------


def test_resumed_run_repeats_the_uninterrupted_run_bit_for_bit(tmp_path, tokenizer, splits):
    # Dropout on, so the global RNG must be restored too, not only weights and data.
    config = make_config(out_dir=str(tmp_path / "run"), checkpoint_every=3)
    full = make_trainer(tokenizer, splits, config, dropout=0.1)
    full.fit()
    full_losses = losses(full.history)
    assert len(full_losses) == 6

    torch.manual_seed(12345)  # a different global RNG state, which resume must undo
    resumed = make_trainer(tokenizer, splits, config, seed=7, dropout=0.1)
    assert resumed.resume(tmp_path / "run" / "ckpt-000003") == 3
    resumed.fit()

    assert losses(resumed.history) == full_losses[3:]  # exact float equality
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_evaluating_and_sampling_do_not_change_training(tokenizer, splits):
    quiet = make_trainer(tokenizer, splits, make_config(eval_every=0, sample_every=0))
    busy = make_trainer(tokenizer, splits, make_config(eval_every=1, sample_every=1))
    quiet.fit()
    busy.fit()
    assert losses(busy.history) == losses(quiet.history)
    assert sum("sample" in r for r in busy.history) == 6


def test_gradient_accumulation_matches_one_larger_batch(tokenizer, splits):
    config = {"steps": 4, "eval_every": 0, "sample_every": 0}
    accumulated = make_trainer(tokenizer, splits, make_config(batch_size=4, grad_accum=2, **config))
    big = make_trainer(tokenizer, splits, make_config(batch_size=8, grad_accum=1, **config))
    accumulated.fit()
    big.fit()
    # Same examples per step, summed in a different order: equal up to float rounding.
    np.testing.assert_allclose(losses(accumulated.history), losses(big.history), rtol=1e-5)
    for a, b in zip(accumulated.model.parameters(), big.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_ranks_draw_disjoint_slices_whose_union_is_the_single_process_batch(splits):
    train, _ = splits

    def micro_batches(world_size, rank, batch_size):
        generator = torch.Generator().manual_seed(3)
        batches = StepBatches(
            train, 16, batch_size, 2, rank=rank, world_size=world_size, generator=generator
        )
        return [batches.next_step() for _ in range(2)]

    single = micro_batches(1, 0, 6)
    ranks = [micro_batches(2, r, 3) for r in range(2)]
    for step in range(2):
        for micro in range(2):
            union = torch.cat([ranks[r][step][micro][0] for r in range(2)])
            assert torch.equal(union, single[step][micro][0])
            assert not torch.equal(ranks[0][step][micro][0], ranks[1][step][micro][0])


# -- failures ----------------------------------------------------------------------------


class PoisonAt(Callback):
    """Writes NaN into a weight after ``step``, as a diverging run would."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.saved: dict[str, dict[str, str]] = {}

    def on_step(self, trainer, record):
        if record["step"] == self.step:
            with torch.no_grad():
                trainer.model.lm_head.weight[0, 0] = float("nan")

    def on_checkpoint(self, trainer, path):
        self.saved[path.name] = tree_digest(path)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, tokenizer, splits
):
    run = tmp_path / "run"
    poison = PoisonAt(step=3)
    config = make_config(steps=10, out_dir=str(run), eval_every=2, sample_every=0)
    train, val = splits
    trainer = Trainer(make_model(tokenizer), train, val, tokenizer, config, callbacks=[poison])
    with pytest.raises(TinylmError, match=r"loss became nan at step 4.*ckpt-000002"):
        trainer.fit()

    assert sorted(p.name for p in run.glob("ckpt-*")) == ["ckpt-000002"]
    assert tree_digest(run / "ckpt-000002") == poison.saved["ckpt-000002"]
    restored = make_model(tokenizer, seed=5)
    assert load_checkpoint(run / "ckpt-000002", restored) == 2
    assert all(torch.isfinite(p).all() for p in restored.parameters())


def test_splits_shorter_than_one_window_are_refused(tokenizer, splits):
    train, _ = splits
    with pytest.raises(TinylmError, match="validation split has 16 tokens.*block_size"):
        Trainer(make_model(tokenizer), train, train[:16], tokenizer, make_config())
    with pytest.raises(TinylmError, match="training split"):
        Trainer(make_model(tokenizer), train[:10], train, tokenizer, make_config())


def test_tokenizer_with_more_ids_than_the_model_is_refused(tokenizer, splits):
    train, val = splits
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=5, block_size=16, n_layer=1, n_embd=16, n_head=2))
    with pytest.raises(TinylmError, match=r"tokenizer has \d+ ids but the model's vocab_size is 5"):
        Trainer(model, train, val, tokenizer, make_config())


def test_failed_compile_falls_back_to_eager_with_a_warning(monkeypatch, tokenizer, splits):
    def broken_compile(module, *args, **kwargs):
        def call(*a, **k):
            raise RuntimeError("no C++ compiler found")

        return call

    eager = make_trainer(tokenizer, splits, make_config(steps=3, eval_every=0))
    eager.fit()
    monkeypatch.setattr(torch, "compile", broken_compile)
    compiled = make_trainer(tokenizer, splits, make_config(steps=3, eval_every=0, compile=True))
    with pytest.warns(UserWarning, match="torch.compile failed.*no C\\+\\+ compiler"):
        compiled.fit()
    assert losses(compiled.history) == losses(eager.history)


# -- the run's files ------------------------------------------------------------------


def test_fit_writes_metrics_plot_run_description_and_prunes_checkpoints(
    tmp_path, tokenizer, splits
):
    run = tmp_path / "run"
    config = make_config(steps=8, eval_every=2, keep_last=2, out_dir=str(run))
    trainer = make_trainer(tokenizer, splits, config)
    summary = trainer.fit()

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 9))
    assert [r["step"] for r in records if "val_loss" in r] == [2, 4, 6, 8]
    assert all(math.isfinite(r["tokens_per_s"]) for r in records if "loss" in r)
    assert sum("sample" in r for r in records) == 4
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((run / "run.json").read_text())
    assert info["model"]["n_embd"] == 16 and info["train"]["steps"] == 8
    assert sorted(p.name for p in run.glob("ckpt-*")) == ["ckpt-000006", "ckpt-000008"]
    assert (run / "best" / "model.safetensors").is_file()
    assert summary["step"] == 8 and summary["best_val_loss"] <= summary["val_loss"]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert val[-1] < val[0]  # it learned something


def test_resume_drops_metrics_the_interrupted_run_wrote_after_its_checkpoint(
    tmp_path, tokenizer, splits
):
    run = tmp_path / "run"
    config = make_config(out_dir=str(run), checkpoint_every=3)
    make_trainer(tokenizer, splits, config).fit()
    resumed = make_trainer(tokenizer, splits, config)
    resumed.resume(run / "ckpt-000003")
    resumed.fit()
    steps = [
        json.loads(line)["step"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_a_callback_can_stop_the_run_early_and_it_is_still_saved(tmp_path, tokenizer, splits):
    class StopAt2(Callback):
        def on_step(self, trainer, record):
            trainer.should_stop = record["step"] == 2

    run = tmp_path / "run"
    train, val = splits
    config = make_config(out_dir=str(run), eval_every=0)
    trainer = Trainer(make_model(tokenizer), train, val, tokenizer, config, callbacks=[StopAt2()])
    summary = trainer.fit()
    assert summary["step"] == 2 and (run / "ckpt-000002").is_dir()


def test_muon_trains_the_model(tokenizer, splits):
    trainer = make_trainer(
        tokenizer,
        splits,
        make_config(optimizer="muon", steps=20, schedule="constant", eval_every=0),
    )
    first = trainer.evaluate()["val_loss"]
    trainer.fit()
    assert trainer.evaluate()["val_loss"] < first - 0.3


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_the_kernels_switch_chooses_the_optimizers_update_too(tokenizer, splits, optimizer):
    """``kernels=fused`` steps AdamW with torch's fused kernel; ``explicit`` writes it out.

    The two runs agree to float rounding: the same formula, rounded in other places.
    """
    config = make_config(optimizer=optimizer, steps=8, schedule="constant", eval_every=0)
    runs = {}
    for kernels in ("fused", "explicit"):
        trainer = make_trainer(tokenizer, splits, config, kernels=kernels)
        assert trainer.optimizer.fused is (kernels == "fused")
        trainer.fit()
        runs[kernels] = trainer.model
    for (name, a), (_, b) in zip(
        runs["fused"].named_parameters(), runs["explicit"].named_parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=0, msg=name)


def test_quiet_runs_print_nothing(capsys, tokenizer, splits):
    make_trainer(tokenizer, splits, make_config(steps=2, eval_every=1)).fit()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_without_a_terminal_is_a_plain_line_per_tenth_of_the_run(
    capsys, tokenizer, splits
):
    config = make_config(steps=20, eval_every=0, sample_every=0, progress=True)
    make_trainer(tokenizer, splits, config).fit()
    err = capsys.readouterr().err  # captured: not a terminal, so no bar is drawn
    lines = [line for line in err.splitlines() if line.startswith("step ") and "/20" in line]
    assert [line.split()[1] for line in lines] == [f"{s}/20" for s in range(2, 21, 2)]
    assert all("loss" in line and "tokens/s" in line and "ETA" in line for line in lines)
    assert "\r" not in err  # no bar redraws in a log


# -- TrainConfig -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "steps must be a positive integer, got 0"),
        ("lr", -1.0, "lr must be a positive number"),
        ("lr", float("inf"), "lr must be a positive number"),
        ("lr", float("nan"), "lr must be a positive number"),
        ("min_lr", 1.0, "min_lr 1.0 is above lr"),
        ("schedule", "step", "schedule 'step' is not one of"),
        ("optimizer", "sgd", "optimizer 'sgd' is not one of: adamw, muon"),
        ("betas", (0.9,), "betas must be two numbers"),
        ("device", "tpu", "device 'tpu' is not one of"),
        ("dtype", "float16", "dtype 'float16' is not one of"),
        ("compile", "yes", "compile must be auto, true or false"),
        ("threads", 0, "threads must be a positive integer"),
        ("warmup_steps", 5000, "warmup_steps 5000 exceeds steps"),
        ("batch_size", True, "batch_size must be a positive integer"),
    ],
)
def test_train_config_rejects_bad_values_with_one_line(field, value, message):
    with pytest.raises(TinylmError, match=message) as info:
        TrainConfig(**{field: value})
    assert "\n" not in str(info.value)


def test_train_config_round_trips_through_json_and_reads_toml(tmp_path):
    config = TrainConfig(steps=50, lr=3e-4, betas=(0.8, 0.9), out_dir=None)
    data = json.loads(json.dumps(config.to_dict()))
    assert TrainConfig.from_dict(data) == config
    toml = tmp_path / "run.toml"
    toml.write_text("[train]\nsteps = 50\nlr = 3e-4\nbetas = [0.8, 0.9]\nout_dir = 'x'\n")
    assert TrainConfig.from_toml(toml) == TrainConfig(
        steps=50, lr=3e-4, betas=(0.8, 0.9), out_dir="x"
    )
    with pytest.raises(TinylmError, match="unknown train config key 'learning_rate'.*steps"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_defaults_follow_the_eval_interval():
    config = TrainConfig(steps=300, eval_every=40)
    assert config.warmup == 30 and TrainConfig(steps=5000).warmup == 100
    assert config.sample_interval == 40 and config.checkpoint_interval == 40
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(sample_every=0, checkpoint_every=0)


def test_samples_stop_at_end_of_document_but_not_before_any_text(tokenizer):
    from tinylm.inference.sampling import sample_text

    a, b = tokenizer.encode("ab")
    eos = tokenizer.eos_id

    class Scripted:
        def generate(self, prompt, max_new_tokens, **kwargs):
            assert prompt == [tokenizer.bos_id] and "stop_ids" not in kwargs
            return iter([eos, a, b, eos, a])

    assert sample_text(Scripted(), tokenizer) == "ab"


# -- what the step does to the gradients -------------------------------------------------


def test_clipping_scales_all_gradients_by_one_global_factor(tokenizer, splits):
    """The gradients the optimiser sees equal the raw ones times max_norm / global norm.

    The expectation is computed here from a copy of the model and the very batch the
    trainer drew, with the formula written out, so clipping each parameter on its
    own (which returns a plausible norm for the logs) would fail it.
    """
    import copy

    max_norm = 0.05
    trainer = make_trainer(tokenizer, splits, make_config(grad_clip=max_norm, optimizer="adamw"))
    reference = copy.deepcopy(trainer.model)
    drawn, seen = [], {}
    next_step = trainer.batches.next_step

    def record_batches():
        batches = next_step()
        drawn.extend(batches)
        return batches

    def record_grads(*args, **kwargs):
        seen.update({n: p.grad.clone() for n, p in trainer.model.named_parameters()})

    trainer.batches.next_step = record_batches
    trainer.optimizer.step = record_grads
    record = trainer.train_step()

    (x, y) = drawn[0]
    _, loss = reference(x, y)
    loss.backward()
    raw = {n: p.grad for n, p in reference.named_parameters()}
    global_norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in raw.values()))
    assert global_norm > 4 * max_norm  # clipping is active in this test
    assert record["grad_norm"] == pytest.approx(global_norm, rel=1e-5)
    scale = max_norm / (global_norm + 1e-6)
    per_parameter = [float(g.norm()) for g in raw.values()]
    assert max(per_parameter) < global_norm  # per-parameter clipping would differ
    for name, grad in raw.items():
        torch.testing.assert_close(seen[name], grad * scale, atol=1e-7, rtol=1e-5, msg=name)
    clipped_norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in seen.values()))
    assert clipped_norm == pytest.approx(max_norm, rel=1e-4)


def test_model_and_train_configs_share_one_meaning_of_a_number():
    """Both configs use tinylm.check_values: inf is refused by each, with the same wording."""
    with pytest.raises(TinylmError, match="init_std must be a positive number, got inf"):
        ModelConfig(init_std=float("inf"))
    with pytest.raises(TinylmError, match="muon_lr must be a positive number, got inf"):
        TrainConfig(muon_lr=float("inf"))


def test_out_of_vocabulary_data_is_refused_once_at_the_start(tokenizer, splits):
    train, val = splits
    bad = train.copy()
    bad[7] = 60000
    with pytest.raises(TinylmError, match="token id 60000 is outside the vocabulary"):
        Trainer(make_model(tokenizer), bad, val, tokenizer, make_config())
