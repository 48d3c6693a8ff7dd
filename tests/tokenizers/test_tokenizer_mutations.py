"""Tokenizer files damaged at random: each must load and work, or be refused in one line.

A tokenizer file may come from anyone (a shared run, a download), so the loader
is tried on mutations of the files tinylm writes and reads (its own JSON, rank
files, and the Hugging Face tokenizer.json that ``tinylm export`` writes): JSON fields dropped
or given odd values, and raw bytes truncated, overwritten, inserted, deleted or
repeated line-wise. Whatever loads must then encode and decode; whatever does
not must raise ``TinylmError`` with a one-line message. Never another exception.
"""

from __future__ import annotations

import copy
import json
import random
from base64 import b64encode
from pathlib import Path

import pytest

from conftest import damage_json
from tinylm.errors import TinylmError
from tinylm.interop.hf_tokenizer import to_hf_tokenizer_json
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.formats import load_tokenizer

PROBE = "Hello, world! <|eos|> naïve café 日本 😀\n\tx = 1"
SEEDS = range(120)


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    corpus = Path(__file__).read_text(encoding="utf-8") * 4
    specials = ["<|bos|>", "<|eos|>", "<|pad|>"]
    return BPETokenizer.train(corpus, 300, special_tokens=specials, progress=False)


@pytest.fixture(scope="module")
def char() -> CharTokenizer:
    return CharTokenizer.train(Path(__file__).read_text(encoding="utf-8"))


def tiktoken_text(tokenizer: BPETokenizer) -> str:
    """The rank file, written here from the vocabulary (base64 token, space, rank)."""
    ordinary = sorted(
        (rank, token)
        for rank, token in tokenizer.vocab.items()
        if rank not in tokenizer.special_tokens.values()
    )
    return "".join(f"{b64encode(token).decode()} {rank}\n" for rank, token in ordinary)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    damaged = bytearray(data)
    if kind == 0:
        return data[: rng.randrange(len(data))]
    if kind == 1:
        for _ in range(rng.randint(1, 5)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    elif kind == 2:
        at = rng.randrange(len(damaged))
        damaged[at:at] = rng.choice([b"\n", b" ", b"=", b"-1", b"\xff", b'"', b"0", b"{"])
    elif kind == 3:
        at = rng.randrange(len(damaged))
        del damaged[at : at + rng.randint(1, 20)]
    else:
        lines = data.split(b"\n")
        lines.insert(rng.randrange(len(lines)), rng.choice(lines))
        return b"\n".join(lines)
    return bytes(damaged)


def loads_and_works_or_is_refused(path: Path) -> str:
    """``"loaded"`` or ``"refused"``; any other exception fails the test."""
    try:
        tokenizer = load_tokenizer(path, pattern="gpt2")
        ids = tokenizer.encode(PROBE.replace("<|eos|>", ""))
        tokenizer.decode(ids)
        tokenizer.decode(list(range(0, tokenizer.vocab_size, 7)))
    except TinylmError as exc:
        assert "\n" not in str(exc), str(exc)
        assert str(exc).strip(), "an error with no message"
        return "refused"
    return "loaded"


def json_of(kind: str, bpe: BPETokenizer, char: CharTokenizer) -> dict:
    """The parsed file of ``kind``: tinylm's own (bpe, char) or HF's (hf-bpe, hf-char)."""
    tokenizer = bpe if kind.endswith("bpe") else char
    return (
        to_hf_tokenizer_json(tokenizer)
        if kind.startswith("hf")
        else json.loads(tokenizer.to_json())
    )


@pytest.mark.parametrize("kind", ["bpe", "char", "hf-bpe", "hf-char"])
def test_damaged_json_fields(kind, bpe, char, tmp_path):
    original = json_of(kind, bpe, char)
    path = tmp_path / "tokenizer.json"
    outcomes = set()
    for seed in SEEDS:
        rng = random.Random(seed)
        tree = copy.deepcopy(original)
        for _ in range(rng.choice([1, 1, 2, 3])):
            damage_json(tree, rng)
        path.write_text(json.dumps(tree), encoding="utf-8")
        outcomes.add(loads_and_works_or_is_refused(path))
    assert "refused" in outcomes  # the damage reached the checks


@pytest.mark.parametrize("name", ["tokenizer.json", "ranks.tiktoken", "hf-tokenizer.json"])
def test_damaged_bytes(name, bpe, tmp_path):
    if name.startswith("hf"):
        text = json.dumps(to_hf_tokenizer_json(bpe), ensure_ascii=False, indent=1)
    else:
        text = bpe.to_json() if name.endswith(".json") else tiktoken_text(bpe)
    original = text.encode("utf-8")
    path = tmp_path / name
    outcomes = set()
    for seed in SEEDS:
        path.write_bytes(mutate_bytes(original, random.Random(seed)))
        outcomes.add(loads_and_works_or_is_refused(path))
    assert outcomes == {"loaded", "refused"}  # both ends of the damage were exercised


@pytest.mark.parametrize("kind", ["hf-bpe", "hf-char"])
def test_the_undamaged_hf_file_loads_as_the_tokenizer(kind, bpe, char, tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(json_of(kind, bpe, char)), encoding="utf-8")
    text = Path(__file__).read_text(encoding="utf-8")[:400]  # characters the char one knows
    tokenizer = bpe if kind == "hf-bpe" else char
    assert load_tokenizer(path).encode(text) == tokenizer.encode(text)


def test_the_rank_file_written_here_loads_as_the_tokenizer(bpe, tmp_path):
    """The undamaged starting point is a real rank file: same ids as the tokenizer."""
    path = tmp_path / "ranks.tiktoken"
    path.write_text(tiktoken_text(bpe), encoding="utf-8")
    text = PROBE.replace("<|eos|>", "")
    assert load_tokenizer(path, pattern="gpt2").encode(text) == bpe.encode(text)
