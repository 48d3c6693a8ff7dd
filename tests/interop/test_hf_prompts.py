"""An exported model continues a prompt in transformers as ``tinylm sample`` does.

``tinylm sample`` starts every prompt with BOS, as every training document starts.
The export's ``tokenizer.json`` puts BOS first too (a ``TemplateProcessing``
post-processor), so ``AutoTokenizer(prompt)`` followed by ``generate`` sees the ids
tinylm sees. The references are the two programs as a user runs them: ``tinylm
sample --top-k 1`` on a run folder, and transformers' greedy ``generate`` on the
export. Each case is a random model (fixed seed) whose greedy text is varied, holds
no special token (so both stop after the same number of tokens), and changes when
BOS is dropped, so an export without BOS fails here.
"""

from __future__ import annotations

import json

import pytest

from tinylm.checkpoint import save_checkpoint
from tinylm.cli.main import main
from tinylm.inference.sampling import prompt_ids
from tinylm.interop.export import export_model
from tinylm.terminal import printable
from tinylm.tokenizers.char import CharTokenizer

from .conftest import VARIANTS, corpus_text, make_model

transformers = pytest.importorskip("transformers", reason="the test extra installs transformers")

pytestmark = pytest.mark.slow  # transformers takes seconds to import and load

PROMPT = "The value of"
NEW_TOKENS = 24

#: name -> (tokenizer, architecture, seed of a model whose greedy text suits the test).
CASES = {
    "char-gpt2": ("char", "gpt2-tied-gelu", 3),
    "char-llama": ("char", "llama-gqa-tied", 2),
    "bpe-gpt2": ("bpe", "gpt2-tied-gelu", 5),
    "bpe-llama": ("bpe", "llama-gqa-tied", 2),
}


@pytest.fixture(scope="module")
def char() -> CharTokenizer:
    return CharTokenizer.train(corpus_text(20_000))


def tinylm_sample(run, capsys) -> str:
    """What ``tinylm sample --top-k 1`` prints after the prompt.

    The terminal gets control characters as escapes (``tinylm.terminal``), so the
    other side of each comparison is shown the same way.
    """
    argv = ["sample", str(run), "--prompt", PROMPT, "--top-k", "1"]
    assert main([*argv, "--max-tokens", str(NEW_TOKENS)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(PROMPT) and out.endswith("\n")
    return out[len(PROMPT) : -1]


def hf_sample(folder) -> str:
    """A transformers user's greedy continuation of the prompt."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    inputs = tokenizer(PROMPT, return_tensors="pt")
    out = model.eval().generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def _special_ids(tokenizer) -> set[int]:
    return {tokenizer.bos_id, tokenizer.eos_id, *getattr(tokenizer, "special_tokens", {}).values()}


@pytest.mark.parametrize("case", list(CASES))
def test_transformers_greedy_text_is_tinylm_greedy_text(case, char, bpe, tmp_path, capsys):
    kind, variant, seed = CASES[case]
    tokenizer = char if kind == "char" else bpe
    model = make_model(tokenizer.vocab_size, seed=seed, init_std=0.3, **VARIANTS[variant])

    # The case is one that tells a lost BOS apart, and its text is not degenerate.
    greedy = list(model.generate(prompt_ids(tokenizer, PROMPT), NEW_TOKENS, temperature=0))
    without_bos = list(model.generate(tokenizer.encode(PROMPT), NEW_TOKENS, temperature=0))
    assert greedy != without_bos
    assert len(set(greedy)) >= 10 and not _special_ids(tokenizer) & set(greedy)

    save_checkpoint(tmp_path / "run" / "ckpt-000001", model, None, 1, tokenizer=tokenizer)
    ours = tinylm_sample(tmp_path / "run", capsys)
    assert ours == printable(tokenizer.decode(greedy))
    export_model(model, tokenizer, tmp_path / "hf", "hf")
    assert printable(hf_sample(tmp_path / "hf")) == ours

    # Every file that names BOS names the one the post-processor adds.
    folder = tmp_path / "hf"
    files = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")
    config, generation, tokenizer_json, tokenizer_config = (
        json.loads((folder / name).read_text(encoding="utf-8")) for name in files
    )
    (bos_name,) = tokenizer_json["post_processor"]["special_tokens"]
    assert tokenizer_json["post_processor"]["special_tokens"][bos_name]["ids"] == [tokenizer.bos_id]
    assert config["bos_token_id"] == generation["bos_token_id"] == tokenizer.bos_id
    assert tokenizer_config["bos_token"] == bos_name and tokenizer_config["add_bos_token"] is True


@pytest.mark.parametrize("case", ["bpe-gpt2", "bpe-llama"])
def test_an_imported_export_samples_the_same_text_with_one_bos(case, bpe, tmp_path, capsys):
    # tinylm -> HF -> tinylm import: the BPE tokenizer comes back, and the imported
    # run's prompts start with one BOS, not the template's plus tinylm's own.
    _, variant, seed = CASES[case]
    model = make_model(bpe.vocab_size, seed=seed, init_std=0.3, **VARIANTS[variant])
    save_checkpoint(tmp_path / "run" / "ckpt-000001", model, None, 1, tokenizer=bpe)
    ours = tinylm_sample(tmp_path / "run", capsys)
    export_model(model, bpe, tmp_path / "hf", "hf")
    assert main(["import", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    capsys.readouterr()

    from tinylm.inference.loading import load_model

    _, tokenizer, _ = load_model(tmp_path / "back")
    assert prompt_ids(tokenizer, PROMPT) == [bpe.bos_id, *bpe.encode(PROMPT)]
    assert tinylm_sample(tmp_path / "back", capsys) == ours == printable(hf_sample(tmp_path / "hf"))
