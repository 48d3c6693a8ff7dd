"""Hub loader: real ``datasets`` code paths, exercised on local JSONL and text files."""

from __future__ import annotations

import json
import sys

import pytest

from tinylm.data.hub import load_hub_dataset
from tinylm.errors import TinylmError


def test_without_datasets_installed_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(TinylmError, match=r"install tinylm\[datasets\]"):
        load_hub_dataset("roneneldan/TinyStories")


@pytest.fixture
def datasets():
    return pytest.importorskip(
        "datasets", reason="the optional datasets package is not installed (tinylm[datasets])"
    )


@pytest.fixture
def jsonl(tmp_path):
    rows = [{"text": "first story", "id": 1}, {"text": "  ", "id": 2}, {"text": None, "id": 3}]
    rows += [{"text": f"story {i}", "id": i} for i in range(4, 8)]
    (tmp_path / "corpus").mkdir()  # not tmp_path: datasets reads "test" in a folder name as a split
    path = tmp_path / "corpus" / "stories.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def test_json_lines_yield_the_non_empty_texts(datasets, jsonl, tmp_path):
    docs = load_hub_dataset("json", data_files=str(jsonl), cache_dir=tmp_path / "cache")
    assert list(docs) == ["first story", "story 4", "story 5", "story 6", "story 7"]


def test_streaming_reads_the_same_documents(datasets, jsonl, tmp_path):
    docs = load_hub_dataset(
        "json", data_files=str(jsonl), cache_dir=tmp_path / "cache", streaming=True
    )
    assert list(docs)[0] == "first story"


def test_text_files_split_into_paragraphs_like_the_blank_separator(datasets, tmp_path):
    from tinylm.data.corpus import iter_documents

    path = tmp_path / "stories.txt"
    path.write_text("Once upon a time.\nThe end.\n\nAnother story.\n\nA third one.\n")
    docs = load_hub_dataset(
        "text", data_files=str(path), cache_dir=tmp_path / "cache", sample_by="paragraph"
    )
    ours = list(iter_documents(path, "blank"))
    assert [d.strip() for d in docs] == [d.strip() for d in ours]


def test_a_local_folder_works_like_a_hub_id_and_feeds_prepare(datasets, jsonl, tmp_path):
    from tinylm.data.prepare import prepare
    from tinylm.data.prepared import load_prepared
    from tinylm.tokenizers.char import CharTokenizer

    docs = list(load_hub_dataset(str(jsonl.parent), cache_dir=tmp_path / "cache"))
    tok = CharTokenizer.train(docs)
    meta = prepare(
        load_hub_dataset(str(jsonl.parent), cache_dir=tmp_path / "cache"),
        tok,
        tmp_path / "d",
        progress=False,
    )
    assert meta["documents"] == 5
    prepared = load_prepared(tmp_path / "d")
    assert tok.decode(prepared.train.tolist() + prepared.val.tolist()) != ""


def test_a_missing_field_lists_the_fields_there_are(datasets, jsonl, tmp_path):
    with pytest.raises(TinylmError, match="no field 'story'.*text, id"):
        load_hub_dataset("json", data_files=str(jsonl), text_field="story", cache_dir=tmp_path)


def test_a_non_text_field_is_refused(datasets, jsonl, tmp_path):
    docs = load_hub_dataset("json", data_files=str(jsonl), text_field="id", cache_dir=tmp_path)
    with pytest.raises(TinylmError, match="holds int, not text"):
        list(docs)


def test_missing_files_and_unknown_splits_are_user_errors(datasets, jsonl, tmp_path):
    with pytest.raises(TinylmError, match="cannot load dataset 'json'"):
        load_hub_dataset("json", data_files=str(tmp_path / "nope.jsonl"), cache_dir=tmp_path)
    with pytest.raises(TinylmError, match="split 'validation'"):
        load_hub_dataset("json", split="validation", data_files=str(jsonl), cache_dir=tmp_path)
