"""The chat template: tokenizers gain the turn tokens, conversations render to ids and a mask."""

from __future__ import annotations

import pytest

from tinylm.chat.conversations import Conversation, Message
from tinylm.chat.template import (
    ASSISTANT,
    CHAT_TOKENS,
    END,
    SYSTEM,
    USER,
    ChatTemplate,
    Rendered,
    add_chat_tokens,
    fit_to_context,
)
from tinylm.errors import TinylmError
from tinylm.tokenizers.bpe import BPETokenizer
from tinylm.tokenizers.char import CharTokenizer
from tinylm.tokenizers.formats import load_tokenizer

TEXT = "the cat sat on the mat. what is it? it is a cat."


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(TEXT * 20, 290, ["<|endoftext|>"], progress=False)


@pytest.fixture(scope="module")
def char():
    return CharTokenizer.train(TEXT + "<|>end")


def test_a_bpe_tokenizer_gains_the_chat_tokens_after_its_own_ids(bpe):
    grown = add_chat_tokens(bpe)
    n = bpe.vocab_size
    assert grown.vocab_size == n + 4
    assert [grown.special_tokens[name] for name in CHAT_TOKENS] == [n, n + 1, n + 2, n + 3]
    assert grown.special_tokens["<|endoftext|>"] == bpe.special_tokens["<|endoftext|>"]
    assert grown.encode(TEXT) == bpe.encode(TEXT)  # every old id keeps its meaning
    assert grown.decode([n, n + 3]) == "<|system|><|end|>"
    assert add_chat_tokens(grown) is grown  # nothing to add
    assert "<|user|>" not in bpe.special_tokens  # the original is unchanged


def test_a_char_tokenizer_gains_them_after_bos_and_unk_and_saves_them(char, tmp_path):
    reserve = CharTokenizer(char.chars, unknown="reserve")
    grown = add_chat_tokens(reserve)
    first = reserve.UNK + 1
    assert grown.special_tokens == {name: first + k for k, name in enumerate(CHAT_TOKENS)}
    assert grown.vocab_size == reserve.vocab_size + 4
    assert grown.encode(TEXT) == reserve.encode(TEXT)
    assert grown.decode([first + 1, *grown.encode("hi"), first + 3]) == "<|user|>hi<|end|>"
    assert grown.token_text(first + 2) == ASSISTANT
    grown.save(tmp_path / "tok.json")
    again = load_tokenizer(tmp_path / "tok.json")
    assert again.special_tokens == grown.special_tokens
    assert again.fingerprint() == grown.fingerprint() != reserve.fingerprint()
    # a tokenizer without specials writes the same file as before they existed
    assert "special_tokens" not in reserve.to_dict()


def test_a_corrupt_char_specials_field_is_one_error():
    with pytest.raises(TinylmError, match="'special_tokens' is not a list of names"):
        CharTokenizer.from_dict({"chars": "ab", "special_tokens": "<|user|>"})
    with pytest.raises(TinylmError, match="repeat"):
        CharTokenizer.from_dict({"chars": "ab", "special_tokens": ["<|a|>", "<|a|>"]})


def test_a_template_needs_the_chat_tokens(bpe):
    with pytest.raises(TinylmError, match="lacks the chat tokens <|system|>"):
        ChatTemplate(bpe)


CONVERSATION = Conversation(
    (
        Message("system", "it is a cat."),
        Message("user", "what is it?"),
        Message("assistant", "a cat."),
        Message("user", "<|end|> on the mat?"),
        Message("assistant", "it sat."),
    ),
    "chat.jsonl:4",
)


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_a_conversation_renders_to_the_documented_layout_and_mask(kind, request):
    tokenizer = add_chat_tokens(request.getfixturevalue(kind))
    s = tokenizer.special_tokens
    enc = tokenizer.encode_ordinary
    rendered = ChatTemplate(tokenizer).render(CONVERSATION)
    # written out by hand from the layout in the module docstring
    parts = [
        ([tokenizer.bos_id], False),
        ([s[SYSTEM]], False),
        (enc("it is a cat."), False),
        ([s[END]], False),
        ([s[USER]], False),
        (enc("what is it?"), False),
        ([s[END]], False),
        ([s[ASSISTANT]], False),
        (enc("a cat."), True),
        ([s[END]], True),
        ([s[USER]], False),
        (enc("<|end|> on the mat?"), False),  # spelled out, never the token itself
        ([s[END]], False),
        ([s[ASSISTANT]], False),
        (enc("it sat."), True),
        ([s[END]], True),
    ]
    assert rendered.ids == [i for ids, _ in parts for i in ids]
    assert rendered.mask == [counted for ids, counted in parts for _ in ids]
    assert rendered.ids.count(s[END]) == 5  # five turns: the user's "<|end|>" text is none
    counted = [i for i, m in zip(rendered.ids, rendered.mask, strict=True) if m]
    assert tokenizer.decode(counted) == "a cat.<|end|>it sat.<|end|>"


def test_the_generation_render_ends_with_the_assistant_header(bpe):
    tokenizer = add_chat_tokens(bpe)
    template = ChatTemplate(tokenizer)
    so_far = CONVERSATION.messages[:4]
    ids = template.render_for_generation(so_far)
    full = template.render(CONVERSATION).ids
    # the same ids as the full conversation up to the last reply's header
    assert ids == full[: len(ids)] and ids[-1] == tokenizer.special_tokens[ASSISTANT]
    assert full[len(ids) : len(ids) + len(tokenizer.encode("it sat."))] == tokenizer.encode(
        "it sat."
    )
    assert template.end_id == tokenizer.special_tokens[END]


def test_an_unknown_character_names_its_conversation(char):
    template = ChatTemplate(add_chat_tokens(char))
    bad = Conversation((Message("user", "hé"), Message("assistant", "a")), "chat.jsonl:9")
    with pytest.raises(TinylmError, match=r"^chat.jsonl:9: character 'é'"):
        template.render(bad)


def test_conversations_longer_than_the_context_are_dropped_and_counted():
    rendered = [Rendered([1] * n, [True] * n, f"c{n}") for n in (5, 9, 8, 12, 3)]
    fitted = fit_to_context(rendered, block_size=8)
    assert [r.source for r in fitted.kept] == ["c5", "c9", "c8", "c3"]  # 9 ids = 8 + 1 fit
    assert fitted.dropped == 1 and fitted.max_tokens == 9
    assert fitted.summary() == "kept 4 of 5 conversations; dropped 1 longer than 9 tokens " + (
        "(the context + 1)"
    )
    with pytest.raises(TinylmError, match="all 2 conversations are longer than the context"):
        fit_to_context(rendered[3:4] * 2, block_size=8)
    with pytest.raises(TinylmError, match="no conversations"):
        fit_to_context([], block_size=8)


# -- the template stored in a checkpoint -----------------------------------------------------


def _stored(tmp_path, record):
    import json

    path = tmp_path / "chat_template.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def test_a_stored_template_reads_back_as_the_same_layout(tmp_path, bpe):
    from tinylm.chat.template import load_chat_template, template_record

    grown = add_chat_tokens(bpe)
    template = load_chat_template(_stored(tmp_path, template_record()), grown)
    conversation = Conversation([Message("user", "what is it?"), Message("assistant", "a cat")])
    assert template.render(conversation) == ChatTemplate(grown).render(conversation)


def test_no_stored_template_means_a_base_model(bpe):
    from tinylm.chat.template import load_chat_template

    assert load_chat_template(None, bpe) is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(format="other"), "is not a tinylm chat template"),
        (lambda r: r.update(version=2), "format version 2"),
        (lambda r: r.pop("tokens"), "tokens"),
        (lambda r: r["tokens"].update(end="<|eot|>"), "end"),
        (lambda r: r["tokens"].update(user=7), "user"),
    ],
)
def test_a_damaged_stored_template_is_one_line(tmp_path, bpe, mutate, message):
    from tinylm.chat.template import load_chat_template, template_record

    record = template_record()
    mutate(record)
    with pytest.raises(TinylmError, match=message) as caught:
        load_chat_template(_stored(tmp_path, record), add_chat_tokens(bpe))
    assert "\n" not in str(caught.value)


def test_a_stored_template_needs_the_tokens_in_the_tokenizer(tmp_path, bpe):
    from tinylm.chat.template import load_chat_template, template_record

    with pytest.raises(TinylmError, match="lacks the chat tokens"):
        load_chat_template(_stored(tmp_path, template_record()), bpe)


def test_a_checkpoint_keeps_its_chat_template(tmp_path, bpe):
    import torch

    from tinylm.chat.template import load_chat_template, template_record
    from tinylm.checkpoint import read_checkpoint_meta, save_checkpoint
    from tinylm.model import GPT, ModelConfig

    grown = add_chat_tokens(bpe)
    torch.manual_seed(0)
    model = GPT(
        ModelConfig(vocab_size=grown.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8)
    )
    plain = read_checkpoint_meta(
        save_checkpoint(tmp_path / "base", model, None, 0, tokenizer=grown)
    )
    assert plain.chat_template_file is None
    folder = save_checkpoint(
        tmp_path / "chat", model, None, 3, tokenizer=grown, chat_template=template_record()
    )
    meta = read_checkpoint_meta(folder)
    assert isinstance(load_chat_template(meta.chat_template_file, grown), ChatTemplate)
