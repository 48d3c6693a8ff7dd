"""Every file tinylm reads, damaged every way a crash or an editor can: one line, or it loads.

Property-based (hypothesis): start from valid files written by tinylm itself —
a checkpoint folder, a tokenizer, a prepared dataset's sidecar, a run's
run.json — then truncate one, flip a byte, drop a field or give a field another
type, and read it back the way the CLI does. The only outcomes allowed are a
successful load (a flipped byte inside a weight is still a weight) or a
``TinylmError`` of one line; any other exception is a bug this test finds.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.checkpoint import load_checkpoint, save_checkpoint
from tinylm.data.prepare import prepare
from tinylm.data.prepared import load_prepared
from tinylm.errors import TinylmError
from tinylm.inference.loading import load_model
from tinylm.model import GPT, ModelConfig
from tinylm.run.folder import read_run_info
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.formats import load_tokenizer
from tinylm.untrusted_files import (
    Record,
    check_format,
    check_readable_file,
    describe,
    safetensors_header,
)

TEXT = "the cat sat on the mat; the dog sat on the log.\n" * 20
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same cases on every run: CI never flakes on a new one
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- mutations ---------------------------------------------------------------------------

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 10**12, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2),
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a node of a JSON value (capped, so huge vocabularies stay cheap)."""
    out = [prefix]
    if isinstance(value, dict):
        for key in list(value)[:12]:
            out += _paths(value[key], (*prefix, key))
    elif isinstance(value, list):
        for index in range(min(len(value), 6)):
            out += _paths(value[index], (*prefix, index))
    return out


@st.composite
def json_mutation(draw, data: Any) -> Any:
    """``data`` with one node dropped or replaced by a value of another type."""
    data = json.loads(json.dumps(data))
    path = draw(st.sampled_from(_paths(data)))
    if not path:
        return draw(ODD_VALUES)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(ODD_VALUES)
    return data


@st.composite
def byte_mutation(draw, raw: bytes) -> bytes:
    """``raw`` truncated, with a byte flipped, or with a run of bytes overwritten."""
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    if kind == "truncate":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    where = draw(st.integers(0, len(raw) - 1))
    if kind == "flip":
        return raw[:where] + bytes([raw[where] ^ draw(st.integers(1, 255))]) + raw[where + 1 :]
    junk = draw(st.binary(min_size=1, max_size=16))
    return raw[:where] + junk + raw[where + len(junk) :]


@st.composite
def file_mutation(draw, path: Path) -> bytes:
    """New bytes for ``path``: a structural change to its JSON (or safetensors header),
    or raw damage."""
    raw = path.read_bytes()
    if draw(st.booleans()):
        if path.suffix == ".json":
            return json.dumps(draw(json_mutation(json.loads(raw)))).encode()
        if path.suffix == ".safetensors":
            (length,) = struct.unpack("<Q", raw[:8])
            header = draw(json_mutation(json.loads(raw[8 : 8 + length])))
            encoded = json.dumps(header).encode()
            return struct.pack("<Q", len(encoded)) + encoded + raw[8 + length :]
    return draw(byte_mutation(raw))


def assert_one_line_or_loads(load) -> None:
    try:
        load()
    except TinylmError as exc:
        assert "\n" not in str(exc), str(exc)


# -- the files ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train(TEXT)
    config = ModelConfig.from_preset(
        "small", vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=8, n_head=2, block_size=8
    )
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters())
    idx = torch.zeros(1, 4, dtype=torch.long)
    model(idx, idx)[1].backward()
    optimizer.step()
    folder = tmp_path_factory.mktemp("ckpt") / "ckpt-000001"
    return save_checkpoint(
        folder,
        model,
        optimizer,
        1,
        tokenizer=tokenizer,
        generators={"batches": torch.Generator().manual_seed(3)},
        metrics={"val_loss": 2.0},
        extra={"best_val_loss": 2.0, "world_size": 1},
        best={"step": 1, "val_loss": 2.0},
    )


def resume_everything(folder: Path) -> None:
    """What ``sample`` and ``train --resume`` read from a checkpoint folder."""
    model, tokenizer, meta = load_model(folder)
    load_checkpoint(
        folder,
        model,
        torch.optim.AdamW(model.parameters()),
        generators={"batches": torch.Generator()},
    )
    if tokenizer is not None:
        tokenizer.decode(tokenizer.encode_document("the cat"))


CHECKPOINT_FILES = [
    "state.json",
    "config.json",
    "optimizer.json",
    "tokenizer.json",
    "model.safetensors",
    "optimizer.safetensors",
    "rng.safetensors",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", CHECKPOINT_FILES)
@SETTINGS
@given(data=st.data())
def test_a_damaged_checkpoint_file_is_one_line_or_loads(checkpoint, name, data):
    state = torch.get_rng_state()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(checkpoint, Path(tmp) / checkpoint.name))
        (folder / name).write_bytes(data.draw(file_mutation(folder / name)))
        assert_one_line_or_loads(lambda: resume_everything(folder))
    torch.set_rng_state(state)


@pytest.fixture(scope="module")
def bpe_file(tmp_path_factory) -> Path:
    tokenizer = BPETokenizer.train(TEXT, 300, special_tokens=["<|endoftext|>"], progress=False)
    path = tmp_path_factory.mktemp("tok") / "bpe.json"
    tokenizer.save(path)
    return path


@pytest.fixture(scope="module")
def char_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "char.json"
    CharTokenizer.train(TEXT).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("which", ["bpe_file", "char_file"])
@SETTINGS
@given(data=st.data())
def test_a_damaged_tokenizer_file_is_one_line_or_loads(request, which, data):
    source = request.getfixturevalue(which)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / source.name
        path.write_bytes(data.draw(file_mutation(source)))

        def load() -> None:
            tokenizer = load_tokenizer(path)
            tokenizer.decode(tokenizer.encode("the cat"))

        assert_one_line_or_loads(load)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "prepared"
    prepare(TEXT, CharTokenizer.train(TEXT), folder, workers=1, progress=False)
    return folder


@pytest.mark.slow
@SETTINGS
@given(data=st.data())
def test_a_damaged_dataset_sidecar_is_one_line_or_loads(prepared, data):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(prepared, Path(tmp) / "prepared"))
        (folder / "meta.json").write_bytes(data.draw(file_mutation(folder / "meta.json")))

        def load() -> None:
            dataset = load_prepared(folder)
            np.asarray(dataset.train[:4]), np.asarray(dataset.val[:4])

        assert_one_line_or_loads(load)


RUN_JSON = {
    "preset": "small",
    "init_from": None,
    "data": ["corpus.txt"],
    "tokenizer": "char",
    "prepared": "data/0123456789abcdef",
    "model": {"vocab_size": 40, "n_layer": 1},
    "train": {"steps": 10},
    "world_size": 1,
}


@SETTINGS
@given(data=st.data())
def test_a_damaged_run_json_is_one_line_or_reads(tmp_path, data):
    (tmp_path / "run.json").write_text(json.dumps(RUN_JSON))
    (tmp_path / "run.json").write_bytes(data.draw(file_mutation(tmp_path / "run.json")))
    assert_one_line_or_loads(lambda: read_run_info(tmp_path))


# -- the readers themselves ---------------------------------------------------------------


@SETTINGS
@given(value=ODD_VALUES)
def test_record_fields_accept_only_their_type(value):
    record = Record({"x": value}, "f.json", "hint")
    for read, ok in (
        (lambda: record.int("x", minimum=0),
         isinstance(value, int) and not isinstance(value, bool) and value >= 0),
        (lambda: record.str("x"), isinstance(value, str)),
        (lambda: record.dict("x"), isinstance(value, dict)),
        (lambda: record.list("x"), isinstance(value, list)),
        (lambda: record.bool("x"), isinstance(value, bool)),
    ):  # fmt: skip
        if ok:
            assert read() == value
        else:
            with pytest.raises(TinylmError, match=r"^f.json: field 'x' is .*; hint$"):
                read()


def test_safetensors_header_matches_the_library(checkpoint):
    from safetensors import safe_open

    tensors, metadata = safetensors_header(checkpoint / "model.safetensors", "hint")
    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as handle:
        assert metadata == handle.metadata()
        assert set(tensors) == set(handle.keys())
        for name in handle.keys():  # noqa: SIM118
            tensor = handle.get_tensor(name)
            assert tensors[name].shape == tuple(tensor.shape)
            assert tensors[name].dtype == {torch.float32: "F32"}[tensor.dtype]


# -- nesting depth ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["[" * 200_000, '{"a": ' * 200_000, "[" * 101 + "]" * 101, '{"k": [' + "{}, [" * 120],
    ids=["200k-arrays", "200k-objects", "101-balanced", "mixed"],
)
def test_json_nested_too_deeply_is_refused_in_one_line_before_parsing(text):
    from tinylm.untrusted_files import parse_json

    with pytest.raises(TinylmError, match="more than 100 deep") as caught:
        parse_json(text, "t.json", "write it again")
    assert "\n" not in str(caught.value) and "t.json" in str(caught.value)


def test_brackets_inside_strings_do_not_count_as_nesting():
    from tinylm.untrusted_files import parse_json

    tricky = ["[" * 300, {"{" * 300: '\\"[[[' * 50}, "\\\\", ["]" * 5, ["\\u005b" * 200]]]
    nested = [[[[[[1]]]]]] * 50
    deepest_allowed = "[" * 100 + "]" * 100
    assert parse_json(json.dumps(tricky), "t.json", "") == tricky
    assert parse_json(json.dumps(tricky, ensure_ascii=False), "t.json", "") == tricky
    assert parse_json(json.dumps(nested), "t.json", "") == nested
    assert parse_json(deepest_allowed, "t.json", "") == json.loads(deepest_allowed)


def test_format_header_names_foreign_and_outdated_files():
    good = {"format": "tinylm-x", "version": 2}
    assert check_format(good, "tinylm-x", 2, "f.json", "tinylm x", "hint") is good
    with pytest.raises(TinylmError, match=r"^f.json is not a tinylm x; hint$"):
        check_format({"format": "other"}, "tinylm-x", 2, "f.json", "tinylm x", "hint")
    with pytest.raises(TinylmError, match="format version 1, this tinylm reads version 2; hint"):
        check_format({"format": "tinylm-x", "version": 1}, "tinylm-x", 2, "f", "tinylm x", "hint")


def test_a_path_is_named_for_what_it_is_before_anything_opens_it(tmp_path):
    """A pipe would block a read forever; a loop or a dangling link is no missing file."""
    os.mkfifo(tmp_path / "pipe")
    os.symlink("loop", tmp_path / "loop")
    os.symlink("nowhere", tmp_path / "dangling")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    assert describe(tmp_path / "pipe") == "a named pipe (FIFO)"
    assert describe(tmp_path / "loop") == "a symlink loop"
    assert describe(tmp_path / "dangling") == "a dangling symlink"
    assert describe(tmp_path / "absent") == "missing"
    assert describe(tmp_path / "file") is None and describe(tmp_path) is None
    assert check_readable_file(tmp_path / "file", "config") == tmp_path / "file"
    with pytest.raises(
        TinylmError, match=r"^config .*pipe is a named pipe \(FIFO\), not a regular"
    ):
        check_readable_file(tmp_path / "pipe", "config")
    with pytest.raises(TinylmError, match=r"^config .* is a folder; give a file$"):
        check_readable_file(tmp_path, "config")
