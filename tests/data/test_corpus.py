"""Corpus sources: the built-in pydoc corpus, files, folders, globs and separators."""

from __future__ import annotations

import os

import pytest

from tinylm.data.corpus import builtin_documents, corpus_from_specs, expand_paths, iter_documents
from tinylm.errors import SettingError, TinylmError


def test_builtin_corpus_is_pydoc_topics():
    from pydoc_data.topics import topics

    docs = builtin_documents()
    assert len(docs) == len(topics) > 50
    assert docs == [topics[k] for k in sorted(topics)]
    assert corpus_from_specs([]) == docs


def test_documents_split_on_separator_streaming(tmp_path, monkeypatch):
    import tinylm.documents as documents

    monkeypatch.setattr(documents, "_READ_CHUNK", 3)  # separators straddle chunk edges
    path = tmp_path / "a.txt"
    path.write_text("one<|endoftext|>two two<|endoftext|>three<|endoftext|>", encoding="utf-8")
    assert list(iter_documents(path)) == ["one", "two two", "three"]
    assert list(iter_documents(path, "file")) == [path.read_text(encoding="utf-8")]


@pytest.mark.parametrize(("sep", "expected"), [("line", ["a", "b"]), ("blank", ["a\nb"])])
def test_named_separators(tmp_path, sep, expected):
    path = tmp_path / "a.txt"
    path.write_text("a\nb", encoding="utf-8")
    assert list(iter_documents([path], sep)) == expected


def test_folders_and_globs(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.txt").write_text("x", encoding="utf-8")
    (tmp_path / "y.txt").write_text("y", encoding="utf-8")
    (tmp_path / ".hidden").write_text("h", encoding="utf-8")
    assert [p.name for p in expand_paths([tmp_path])] == ["x.txt", "y.txt"]
    assert [p.name for p in expand_paths([str(tmp_path / "*.txt")])] == ["y.txt"]


def test_missing_and_non_utf8_inputs_are_user_errors(tmp_path):
    with pytest.raises(TinylmError, match="does not exist"):
        expand_paths([tmp_path / "nope.txt"])
    with pytest.raises(TinylmError, match="no files match"):
        expand_paths([str(tmp_path / "*.zzz")])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\xff\xfe")
    with pytest.raises(TinylmError, match="not UTF-8"):
        list(iter_documents(bad))


def test_a_glob_through_a_symlink_loop_lists_each_file_once(tmp_path):
    # issue 13, defect 16: 'loopdir/**/*.txt' over loopdir/self -> . found a.txt 41 times
    loop = tmp_path / "loopdir"
    loop.mkdir()
    (loop / "a.txt").write_text("alpha", encoding="utf-8")
    (loop / "b.txt").write_text("beta", encoding="utf-8")
    (loop / "self").symlink_to(".")
    files = expand_paths([str(loop / "**" / "*.txt")])
    assert sorted(p.resolve() for p in files) == [loop / "a.txt", loop / "b.txt"]
    assert expand_paths([str(loop / "a.txt"), str(loop / "self" / "a.txt")]) == [loop / "a.txt"]


def test_pipes_and_symlink_loops_are_named_not_called_missing(tmp_path):
    # issue 13, defect 13: both were "does not exist", and a FIFO read would hang
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(TinylmError, match="named pipe"):
        expand_paths([str(tmp_path / "pipe")])
    with pytest.raises(TinylmError, match="symlink loop"):
        expand_paths([str(tmp_path / "loop")])
    with pytest.raises(TinylmError, match="does not exist"):
        expand_paths([str(tmp_path / "nothing.txt")])


def test_an_empty_separator_is_a_setting_error():
    with pytest.raises(SettingError, match="separator is empty") as info:
        list(iter_documents(["some text"], ""))
    assert info.value.setting == "separator"
