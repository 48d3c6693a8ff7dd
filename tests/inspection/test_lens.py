"""The logit lens: read-outs of the residual stream, checked against the model's own forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinylm.errors import TinylmError
from tinylm.inspect.figures import save_png
from tinylm.inspect.lens import format_lens_table, logit_lens, plot_logit_lens
from tinylm.inspect.loaded import LoadedModel

TEXT = "the dog sat"


def independent_readouts(model, ids: list[int]) -> list[torch.Tensor]:
    """Probabilities after the embeddings and after each block, captured by hooks.

    The hooks see what the model's own forward pass feeds into the first block and
    gets out of every block; the final norm and ``lm_head`` then read each out.
    """
    states = []
    hooks = [model.blocks[0].register_forward_pre_hook(lambda _m, args: states.append(args[0]))]
    hooks += [
        block.register_forward_hook(lambda _m, _args, out: states.append(out[0]))
        for block in model.blocks
    ]
    try:
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids]))
            final = model.final_norm or torch.nn.Identity()
            readouts = [torch.softmax(model.lm_head(final(s))[0], -1) for s in states]
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.allclose(torch.softmax(logits[0], -1), readouts[-1], atol=1e-6)
    return readouts


@pytest.mark.parametrize(
    "overrides",
    [{}, {"norm_placement": "post"}, {"position": "rope", "norm": "rmsnorm"}, {"n_layer": 3}],
)
def test_every_stage_equals_the_hooked_forward_pass(build_run, overrides):
    loaded = LoadedModel.from_run(build_run("lens", **overrides))
    lens = logit_lens(loaded, TEXT, k=3)
    ids = loaded.encode(TEXT)
    expected = independent_readouts(loaded.model, ids)
    n_layer = loaded.config.n_layer
    assert lens.stages == ["embeddings"] + [f"layer {n}" for n in range(n_layer)]
    assert lens.top_ids.shape == (n_layer + 1, len(ids), 3)
    for stage, probs in enumerate(expected):
        values, indices = probs.topk(3, dim=-1)
        np.testing.assert_array_equal(lens.top_ids[stage], indices.numpy())
        np.testing.assert_allclose(lens.top_probs[stage], values.numpy(), rtol=1e-5, atol=1e-7)


def test_last_layer_guess_is_the_models_argmax(loaded):
    ids = loaded.encode(TEXT)
    with torch.no_grad():
        logits, _ = loaded.model(torch.tensor([ids]))
    lens = logit_lens(loaded, TEXT, k=1)
    np.testing.assert_array_equal(lens.top_ids[-1, :, 0], logits[0].argmax(-1).numpy())
    assert lens.top_pieces[-1][-1][0] == loaded.pieces([int(logits[0, -1].argmax())])[0]


def test_bad_input(loaded):
    with pytest.raises(TinylmError, match="at least 1"):
        logit_lens(loaded, TEXT, k=0)
    with pytest.raises(TinylmError, match="empty"):
        logit_lens(loaded, "")


def test_table_and_plot(loaded, tmp_path, assert_png):
    lens = logit_lens(loaded, TEXT, k=2)
    lines = format_lens_table(lens, last=4).splitlines()
    assert lines[0].split() == ["read", "out", "after", "␣", "s", "a", "t"]
    assert [line.split()[0] for line in lines[2:]] == ["embeddings", "layer", "layer"]
    last = lines[-1].split()
    assert last[-2:] == [
        lens.top_pieces[-1][-1][0].replace(" ", "␣"),
        f"{lens.top_probs[-1, -1, 0]:.2f}",
    ]
    fig = plot_logit_lens(lens)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == lens.stages
    assert len(ax.texts) == len(lens.stages) * len(lens.ids)
    assert_png(save_png(fig, tmp_path / "lens.png"))
