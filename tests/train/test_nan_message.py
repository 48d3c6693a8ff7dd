"""The NaN stop's advice fits the run: "turn clipping on" only when it was off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinylm.errors import TinylmError, TrainingDiverged
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.callbacks import Callback
from tinylm.train.config import TrainConfig
from tinylm.train.trainer import Trainer

TEXT = "the quick brown fox jumps over the lazy dog. " * 30


class PoisonWeights(Callback):
    """After the first step, a NaN in the weights makes the next loss NaN."""

    def on_step(self, trainer, record):
        with torch.no_grad():
            trainer.model.lm_head.weight[0, 0] = float("nan")


@pytest.mark.parametrize(("grad_clip", "advises_clipping"), [(1.0, False), (0.0, True)])
def test_nan_advice_mentions_clipping_only_when_it_was_off(grad_clip, advises_clipping):
    tokenizer = CharTokenizer.train(TEXT)
    ids = np.asarray(tokenizer.encode_document(TEXT), dtype=np.uint16)
    torch.manual_seed(0)
    model = GPT(
        ModelConfig.from_preset(
            "small", vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=16, n_head=2, block_size=8
        )
    )
    config = TrainConfig.from_dict(
        {"steps": 3, "batch_size": 2, "eval_every": 0, "sample_every": 0, "out_dir": None,
         "progress": False, "grad_clip": grad_clip, "device": "cpu", "compile": False}
    )  # fmt: skip
    trainer = Trainer(model, ids[:1000], ids[1000:], tokenizer, config, callbacks=[PoisonWeights()])
    with pytest.raises(TinylmError) as exc:
        trainer.fit()
    message = str(exc.value)
    assert "became nan at step 2" in message and "lower lr" in message
    assert ("clipping" in message) == advises_clipping
    assert "keep grad_clip on" not in message
    # its own type, so a learning-rate sweep can record the run as diverged and go on
    assert isinstance(exc.value, TrainingDiverged)
