"""`tinylm tokenizer train` and `tinylm tokenize`, run the way a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import data_path
from tinylm.cli.main import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tinylm.cli.main", *args], capture_output=True, text=True
    )


def test_tokenizer_train_on_builtin_corpus_then_tokenize(tmp_path, capsys):
    out = tmp_path / "tok.json"
    assert main(["tokenizer", "train", "--vocab-size", "300", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "300 ids" in printed and "characters ->" in printed
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["format"] == "tinylm-tokenizer" and data["type"] == "bpe"

    assert main(["tokenize", "-t", str(out), "-t", "char", "--color", "never", "unhappy"]) == 0
    printed = capsys.readouterr().out
    # The char tokenizer shows one bracket per character: boundaries are visible.
    assert "[u][n][h][a][p][p][y]" in printed
    assert "| unhappy |" in printed  # the comparison table
    assert "characters per token on the corpus" in printed


def test_tokenize_colour_marks_boundaries_with_ansi(capsys):
    assert main(["tokenize", "-t", "char", "--color", "always", "ab"]) == 0
    printed = capsys.readouterr().out
    assert "\x1b[30;43ma\x1b[0m\x1b[30;46mb\x1b[0m" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tokenizer", "train", "--vocab-size", "100", "--out", "{tmp}/t.json"], "vocab"),
        (["tokenizer", "train", "{tmp}/missing.txt", "--out", "{tmp}/t.json"], "does not exist"),
        (["tokenize", "-t", "{tmp}/nope.json", "hi"], "not a file"),
        (["tokenize", "-t", "{tmp}/bad.json", "hi"], "bad.json"),
        (["tokenize", "-t", "bpe:x", "hi"], "bpe:N"),
        (["tokenizer", "train", "{tmp}/empty.txt", "--out", "{tmp}/t.json"], "empty"),
        (["tokenizer", "train", "--pattern", "(\\w+", "--out", "{tmp}/t.json"], "valid regex"),
        (["tokenizer", "train", "--pattern", "gpt5", "--out", "{tmp}/t.json"], "unknown pattern"),
        (["tokenizer", "train", "{tmp}/bad.bin", "--out", "{tmp}/t.json"], "UTF-8"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    (tmp_path / "bad.json").write_text('{"format": "tinylm-tokenizer", "vers', encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "bad.bin").write_bytes(bytes(range(256)) * 4)
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinylm: error:"), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "t.json").exists()


def test_out_that_is_a_folder_fails_before_training_and_leaves_it_alone(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine", encoding="utf-8")
    result = run_cli("tokenizer", "train", "--vocab-size", "300", "--out", str(folder), "--quiet")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinylm: error:"), result.stderr
    assert "is a folder" in lines[0]
    assert "trained" not in result.stdout  # it failed before training, not after
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left behind


def test_failed_training_leaves_an_existing_out_file_intact(tmp_path):
    out = tmp_path / "tok.json"
    out.write_text("previous tokenizer", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    result = run_cli("tokenizer", "train", str(tmp_path / "empty.txt"), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert out.read_text(encoding="utf-8") == "previous tokenizer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "tok.json"]


def test_tokenize_real_vocabularies_side_by_side_print_tiktokens_ids(capsys):
    tiktoken = pytest.importorskip("tiktoken")
    tiktoken_load = pytest.importorskip("tiktoken.load")
    from tinylm.tokenizers.pretokenize import CL100K_PATTERN, GPT2_PATTERN

    files = {
        "gpt2.tiktoken": (GPT2_PATTERN, {"<|endoftext|>": 50256}),
        "cl100k_base.tiktoken": (CL100K_PATTERN, {"<|endoftext|>": 100257}),
    }
    text = "Hello <|endoftext|> naïve 🤖 strawberry"
    paths = [str(data_path(f"vocab/{name}")) for name in files]
    pair = str(data_path("vocab/gpt2_vocab.json"))  # encoder.json + vocab.bpe style
    assert main(["tokenize", *(a for p in [*paths, pair] for a in ("-t", p)), text]) == 0
    printed = capsys.readouterr().out
    for path, (name, (pattern, specials)) in zip(paths, files.items(), strict=True):
        reference = tiktoken.Encoding(
            name=f"ref_{name}",
            pat_str=pattern,
            mergeable_ranks=tiktoken_load.load_tiktoken_bpe(path),
            special_tokens=specials,
        )
        # A special token typed into the text is shown as that token, as tiktoken
        # encodes it with allowed_special="all".
        ids = reference.encode(text, allowed_special="all")
        assert f"== {name} " in printed
        assert f"ids {ids}  ({len(ids)} tokens" in printed
        if name == "gpt2.tiktoken":
            assert printed.count(f"ids {ids}  ") == 2  # the GPT-2 pair gives the same ids
    assert "[<|endoftext|>]" in printed
    assert "| gpt2.tiktoken | cl100k_base.tiktoken | gpt2_vocab.json |" in printed


def test_char_tokenizer_from_other_text_still_shows_the_texts(tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("emma\nava\nolivia\n", encoding="utf-8")
    out = tmp_path / "char.json"
    args = ["tokenizer", "train", str(names), "--kind", "char", "--doc-sep", "line"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    # The built-in corpus has capitals this tokenizer never saw: the corpus statistic
    # says so, but the command still shows the user's text and succeeds.
    assert main(["tokenize", "-t", str(out), "-t", "char", "--color", "never", "emma"]) == 0
    printed = capsys.readouterr().out
    assert "[e][m][m][a]" in printed
    assert "char.json: n/a, it cannot encode the corpus: character" in printed
    assert "  char: 1.00" in printed


def test_char_viewer_shows_unseen_characters_as_unk(capsys):
    assert main(["tokenize", "-t", "char", "--color", "never", "a\u263a"]) == 0
    assert "[a][<UNK>]" in capsys.readouterr().out


def test_char_tokenizer_train_can_reserve_unknown(tmp_path):
    from tinylm.tokenizers.formats import load_tokenizer

    out = tmp_path / "c.json"
    args = ["tokenizer", "train", "--kind", "char", "--unknown", "reserve", "--out", str(out)]
    assert main(args) == 0
    tok = load_tokenizer(out)
    assert tok.decode(tok.encode("a\u263a")) == "a\ufffd"


def test_partial_characters_show_their_bytes(capsys):
    from tinylm.inspect.tokens import token_pieces
    from tinylm.tokenizers.bpe import BPETokenizer

    bytes_only = BPETokenizer({i: bytes([i]) for i in range(256)}, [])
    ids = bytes_only.encode("é")  # two bytes, two tokens, neither a whole character
    assert token_pieces(bytes_only, ids) == ["\\xc3", "\\xa9"]
    assert token_pieces(bytes_only, bytes_only.encode("ab")) == ["a", "b"]


def test_bpe_options_with_a_char_tokenizer_are_refused(tmp_path):
    out = tmp_path / "c.json"
    args = ["tokenizer", "train", "--kind", "char", "--vocab-size", "500", "--pattern", "o200k"]
    result = run_cli(*args, "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "tinylm: error: --vocab-size, --pattern only apply to BPE; drop them or use --kind bpe"
    )
    assert not out.exists()


def test_a_corpus_of_only_special_tokens_is_refused_and_writes_nothing(tmp_path, capsys):
    corpus = tmp_path / "eot.txt"
    corpus.write_text("<|endoftext|>", encoding="utf-8")
    out = tmp_path / "tok.json"
    args = ["tokenizer", "train", str(corpus), "--vocab-size", "300", "--out", str(out)]
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds only special tokens" in err[0], err
    assert not out.exists()


def test_a_vocabulary_smaller_than_asked_says_so(tmp_path, capsys):
    corpus = tmp_path / "ab.txt"
    corpus.write_text("ab<|endoftext|>ab", encoding="utf-8")
    out = tmp_path / "tok.json"
    args = ["tokenizer", "train", str(corpus), "--vocab-size", "300", "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "258 ids" in printed and "fewer than the 300 asked" in printed


def test_no_specials_with_a_special_is_refused(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world " * 20, encoding="utf-8")
    out = tmp_path / "tok.json"
    argv = ["tokenizer", "train", str(corpus), "--no-specials", "--special", "<|x|>"]
    assert main([*argv, "--vocab-size", "300", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tinylm: error: --no-specials and --special contradict each other; "
                   "give one of them"]  # fmt: skip
    assert not out.exists()


def test_tokenize_reads_a_hugging_face_tokenizer_json(tmp_path, capsys):
    from tinylm.interop.hf_tokenizer import to_hf_tokenizer_json
    from tinylm.tokenizers.char import CharTokenizer

    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(to_hf_tokenizer_json(CharTokenizer.train("abc"))), "utf-8")
    assert main(["tokenize", "-t", str(path), "--color", "never", "cab"]) == 0
    assert "[c][a][b]" in capsys.readouterr().out


def test_tokenize_refuses_a_deeply_nested_file_in_one_line(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text("[" * 200_000, encoding="utf-8")
    result = run_cli("tokenize", "-t", str(path), "hello")
    assert result.returncode == 2
    assert "more than 100 deep" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
