"""``tinylm inspect``: tables on stdout, pictures in RUN/inspect/, one-line errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tinylm.cli.main import main


@pytest.fixture
def run(tiny_run, tmp_path):
    """A private copy of the tiny run, so each test sees only the files it writes."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def test_next(run, capsys, assert_png):
    assert main(["inspect", "next", str(run), "the cat", "-k", "4", "--temperature", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "next token after 'the cat' (run, step 7)" in out
    assert "p (T=0.5)" in out and "(all others)" in out
    png = run / "inspect" / "next-the-cat-T0.5.png"
    assert f"wrote {png}" in out
    assert_png(png)


def test_attention_writes_png_npy_and_json(run, capsys, assert_png, tmp_path):
    out_dir = tmp_path / "views"
    assert (
        main(["inspect", "attention", str(run), "a dog", "--layer", "1", "--out", str(out_dir)])
        == 0
    )
    out = capsys.readouterr().out
    assert "where the last token 'g' looks most" in out
    weights = np.load(out_dir / "attention-a-dog-L1.npy")
    assert weights.shape == (1, 4, 6, 6)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert (out_dir / "attention-a-dog-L1.json").is_file()
    assert_png(out_dir / "attention-a-dog-L1.png")
    assert not (run / "inspect").exists()


def test_embeddings(run, capsys, assert_png):
    args = ["inspect", "embeddings", str(run), "--token", "a", "--analogy", "T", "t", "h"]
    assert main([*args, "-k", "3", "--plot-tokens", "10"]) == 0
    out = capsys.readouterr().out
    assert "nearest neighbours of 'a' (cosine similarity)" in out
    assert "'T' - 't' + 'h' is nearest to" in out
    assert "PCA of 10 tokens" in out
    assert_png(run / "inspect" / "embeddings-pca.png")


def test_embeddings_default_shows_the_most_frequent_tokens(run, capsys):
    assert main(["inspect", "embeddings", str(run), "--plot-tokens", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("nearest neighbours of") == 5
    assert "nearest neighbours of '␣'" in out


def test_lens_on_a_checkpoint_folder_writes_into_its_run(run, capsys, assert_png):
    checkpoint = next(run.glob("ckpt-*"))
    assert main(["inspect", "lens", str(checkpoint), "the dog", "--last", "3"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].split() == ["read", "out", "after", "d", "o", "g"]
    assert [line.split()[0] for line in lines[3:6]] == ["embeddings", "layer", "layer"]
    assert_png(run / "inspect" / "lens-the-dog.png")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["next", "{missing}", "the"], "does not exist"),
        (["next", "{run}", ""], "the text is empty"),
        (["next", "{run}", "the cat sat on the mat!!"], "more than the model's block_size of 24"),
        (["next", "{run}", "the", "--temperature", "-1"], "temperature must be"),
        (["next", "{run}", "the", "-k", "0"], "--top-k must be at least 1"),
        (["next", "{run}", "café"], "was not in the training text"),
        (["attention", "{run}", "the", "--layer", "2"], "layer 2 does not exist"),
        (["attention", "{run}", "the", "--head", "9"], "head 9 does not exist"),
        (["embeddings", "{run}", "--token", "ca"], "not one token"),
        (["embeddings", "{run}", "--token", "é"], "not in this model's vocabulary"),
        (["embeddings", "{run}", "--analogy", "a", "t", "at"], "not one token"),
        (["lens", "{run}", "the", "--last", "0"], "--last must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run, tmp_path, capsys, args, message):
    filled = [a.format(run=run, missing=tmp_path / "nope") for a in args]
    assert main(["inspect", *filled]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("tinylm: error: ") and captured.err.count("\n") == 1
    assert message in captured.err
    assert not (run / "inspect").exists()  # nothing written


def test_a_view_is_required(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["inspect"])
    assert stop.value.code == 2


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
@pytest.mark.parametrize(
    "argv",
    [["next", "{run}", "the cat"], ["embeddings", "{run}", "--plot-tokens", "5"]],
    ids=["next", "embeddings"],
)
def test_damaged_weights_are_one_line_not_a_table_of_nan(tmp_path, tokenizer, capsys, argv, poison):
    # `inspect next` printed a table of nan probabilities; `inspect embeddings` raised
    # numpy's LinAlgError ("SVD did not converge").
    import torch

    from .conftest import make_model, save_run

    model = make_model(tokenizer)
    with torch.no_grad():
        model.tok_emb.weight[3].fill_(poison)
        model.tok_emb.weight[5:].fill_(poison)
    run = save_run(tmp_path / "damaged", model, tokenizer, with_data=False)
    out = tmp_path / "inspect-out"
    assert main(["inspect", *[a.replace("{run}", str(run)) for a in argv], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinylm: error: ") and err.count("\n") == 1, err
    assert "NaN or infinite" in err and "earlier checkpoint" in err
    assert not out.exists() or not any(out.iterdir())
