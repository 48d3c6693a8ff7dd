"""Embedding views against brute-force numpy: cosine neighbours, analogies, PCA."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tinylm.errors import TinylmError
from tinylm.inspect.embeddings import (
    analogy,
    format_neighbours,
    frequent_tokens,
    nearest_neighbours,
    pca_2d,
    plot_embeddings,
    project_embeddings,
)
from tinylm.inspect.figures import save_png
from tinylm.inspect.loaded import LoadedModel


def brute_force_ranking(matrix: np.ndarray, vector: np.ndarray, exclude: set[int]) -> list:
    """Every row's cosine with ``vector``, one at a time, sorted best first."""
    scored = []
    for i, row in enumerate(matrix):
        if i in exclude:
            continue
        cos = float(np.dot(row, vector) / (np.sqrt(np.dot(row, row)) * np.sqrt(vector @ vector)))
        scored.append((cos, i))
    scored.sort(key=lambda pair: -pair[0])
    return scored


def table(loaded) -> np.ndarray:
    return loaded.model.tok_emb.weight.detach().double().numpy()


@pytest.mark.parametrize("token", ["t", " ", "<BOS>"])
def test_nearest_neighbours_match_brute_force(loaded, token):
    i = loaded.tokenizer.BOS if token == "<BOS>" else loaded.tokenizer.stoi[token]
    found = nearest_neighbours(loaded, i if token == "<BOS>" else token, k=6)
    expected = brute_force_ranking(table(loaded), table(loaded)[i], {i})[:6]
    assert [n.id for n in found] == [j for _, j in expected]
    np.testing.assert_allclose([n.similarity for n in found], [c for c, _ in expected])
    assert [n.piece for n in found] == loaded.pieces([j for _, j in expected])


def test_analogy_matches_brute_force(loaded):
    stoi, m = loaded.tokenizer.stoi, table(loaded)
    a, b, c = stoi["T"], stoi["t"], stoi["h"]
    expected = brute_force_ranking(m, m[a] - m[b] + m[c], {a, b, c})[:5]
    found = analogy(loaded, "T", "t", "h", k=5)
    assert [n.id for n in found] == [j for _, j in expected]
    np.testing.assert_allclose([n.similarity for n in found], [cos for cos, _ in expected])


def test_output_embeddings_of_an_untied_model(build_run):
    loaded = LoadedModel.from_run(build_run("untied", tie_embeddings=False))
    out = loaded.model.lm_head.weight.detach().double().numpy()
    i = loaded.tokenizer.stoi["a"]
    found = nearest_neighbours(loaded, "a", k=3, source="output")
    assert [n.id for n in found] == [j for _, j in brute_force_ranking(out, out[i], {i})[:3]]


def test_pca_matches_the_covariance_eigenvectors_up_to_sign():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(40, 6)) * np.array([5.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    coords, explained = pca_2d(points)
    centred = points - points.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(centred, rowvar=False))  # ascending
    for c in range(2):
        expected = centred @ vectors[:, -1 - c]
        assert np.allclose(coords[:, c], expected) or np.allclose(coords[:, c], -expected)
    np.testing.assert_allclose(explained, values[::-1][:2] / values.sum())
    # And against numpy's SVD directly.
    _, _, vt = np.linalg.svd(centred)
    np.testing.assert_allclose(np.abs(coords), np.abs(centred @ vt[:2].T))


def test_projection_uses_the_most_frequent_training_tokens(loaded, tiny_run):
    data = np.fromfile(tiny_run / "data" / "corpus" / "train.bin", dtype=np.uint16)
    counts = Counter(data.tolist())
    ids, found = frequent_tokens(loaded, 5)
    assert [counts[int(i)] for i in ids] == sorted(counts.values(), reverse=True)[:5]
    assert loaded.pieces(ids[:1]) == [" "]  # the corpus is mostly short words
    projection = project_embeddings(loaded, n=12)
    np.testing.assert_array_equal(projection.ids, frequent_tokens(loaded, 12)[0])
    coords, _ = pca_2d(table(loaded)[projection.ids])
    np.testing.assert_allclose(projection.coords, coords)
    assert projection.explained[0] >= projection.explained[1] > 0


def test_without_training_data_the_first_ids_are_projected(build_run):
    loaded = LoadedModel.from_run(build_run("bare", with_data=False))
    projection = project_embeddings(loaded, n=10)
    assert projection.counts is None
    np.testing.assert_array_equal(projection.ids, np.arange(10))


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("é", "not in this model's vocabulary"),
        ("ca", "not one token"),
        ("", "non-empty"),
        (999, "outside"),
    ],
)
def test_bad_tokens_are_refused(loaded, token, message):
    with pytest.raises(TinylmError, match=message):
        nearest_neighbours(loaded, token)


def test_visible_space_stands_for_a_space(loaded):
    assert loaded.token_id("␣") == loaded.tokenizer.stoi[" "]


def test_table_and_plot(loaded, tmp_path, assert_png):
    found = nearest_neighbours(loaded, "a", k=3)
    lines = format_neighbours(found).splitlines()
    assert lines[0].split() == ["#", "token", "id", "cosine"] and len(lines) == 5
    assert lines[2].split()[2:] == [str(found[0].id), f"{found[0].similarity:+.3f}"]
    fig = plot_embeddings(project_embeddings(loaded, n=15))
    ax = fig.axes[0]
    assert "15 most frequent tokens" in ax.get_title() and "tiny, step 7" in ax.get_title()
    assert ax.get_xlabel().startswith("principal component 1")
    assert {t.get_text() for t in ax.texts} >= {"␣", "a", "t"}
    assert_png(save_png(fig, tmp_path / "pca.png"))


def test_the_table_is_copied_out_once_per_loaded_model(loaded):
    from tinylm.inspect.embeddings import embedding_matrix

    first = embedding_matrix(loaded)
    assert embedding_matrix(loaded) is first and not first.flags.writeable
    np.testing.assert_array_equal(first, table(loaded))
    assert embedding_matrix(loaded, "output") is not first  # its own entry, even when tied
    with pytest.raises(TinylmError, match="source must be one of input, output"):
        embedding_matrix(loaded, "hidden")
