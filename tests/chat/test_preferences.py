"""Preference pairs: read and checked line by line, rendered to the final reply, built offline."""

from __future__ import annotations

import json

import pytest

from tinylm.chat.builtin import builtin_conversations
from tinylm.chat.conversations import Message
from tinylm.chat.preferences import (
    Preference,
    builtin_preferences,
    fit_pairs,
    load_hub_preferences,
    parse_preference,
    preferences_from,
    read_preferences,
    render_pair,
    render_reply,
    split_held_out,
)
from tinylm.chat.template import ChatTemplate, add_chat_tokens
from tinylm.errors import TinylmError
from tinylm.tokenizers.char import CharTokenizer

STRING = {"prompt": "What is 2 + 2?", "chosen": "4.", "rejected": "5.", "id": 7}
LISTED = {
    "prompt": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "What is 2 + 2?"},
    ],
    "chosen": "4.",
    "rejected": "Four, or maybe five.",
}


def write_lines(path, *lines: str):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_string_prompt_is_one_user_turn_and_other_keys_are_ignored():
    pair = parse_preference(STRING, "f:1")
    assert pair == Preference((Message("user", "What is 2 + 2?"),), "4.", "5.", "f:1")
    assert pair.conversation("4.").messages[-1] == Message("assistant", "4.")


def test_a_message_list_prompt_keeps_every_turn():
    pair = parse_preference(LISTED, "f:2")
    assert [m.role for m in pair.prompt] == ["system", "user", "assistant", "user"]
    assert parse_preference(pair.to_dict(), "again") == Preference(
        pair.prompt, "4.", LISTED["rejected"], "again"
    )


def test_a_file_is_read_line_by_line_skipping_blank_lines(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", json.dumps(STRING), "", json.dumps(LISTED))
    pairs = list(read_preferences(path))
    assert [p.source for p in pairs] == [f"{path}:1", f"{path}:3"]
    assert [p.rejected for p in pairs] == ["5.", "Four, or maybe five."]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "p.jsonl:2 is not valid JSON"),
        (json.dumps({"chosen": "a", "rejected": "b"}), r"p.jsonl:2: field 'prompt' is missing"),
        (
            json.dumps({"prompt": 3, "chosen": "a", "rejected": "b"}),
            "a string or a list of messages",
        ),
        (
            json.dumps({"prompt": "q", "chosen": ["a"], "rejected": "b"}),
            r"field 'chosen' is a list",
        ),
        (json.dumps({"prompt": "q", "chosen": "a"}), r"field 'rejected' is missing"),
        (json.dumps({"prompt": "q", "chosen": "same", "rejected": "same"}), "the same reply"),
        (
            json.dumps(
                {
                    "prompt": [
                        {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "a"},
                    ],
                    "chosen": "x",
                    "rejected": "y",
                }
            ),
            "the prompt's last turn is the assistant's",
        ),  # fmt: skip
        (
            json.dumps(
                {"prompt": [{"role": "robot", "content": "q"}], "chosen": "x", "rejected": "y"}
            ),
            "p.jsonl:2: message 1: field 'role'",
        ),  # fmt: skip
        ('{"prompt": "q", "chosen": "\\ud800", "rejected": "y"}', "lone surrogate"),
        ("[1, 2]", "p.jsonl:2 holds a list, not a JSON object"),
    ],
)
def test_a_bad_line_is_one_line_naming_file_and_line(tmp_path, line, expected):
    path = write_lines(tmp_path / "p.jsonl", json.dumps(STRING), line)
    with pytest.raises(TinylmError, match=expected) as exc:
        list(read_preferences(path))
    assert "\n" not in str(exc.value)
    assert f"{path}:2" in str(exc.value)


def test_a_missing_file_and_an_empty_set_are_errors(tmp_path):
    with pytest.raises(TinylmError, match="preference file .*nope.jsonl does not exist"):
        list(read_preferences(tmp_path / "nope.jsonl"))
    empty = write_lines(tmp_path / "empty.jsonl", "", "  ")
    with pytest.raises(TinylmError, match="holds no preference pairs"):
        preferences_from(str(empty))
    with pytest.raises(TinylmError, match="holds no preference pairs"):
        preferences_from(f"prefs:{empty}")


def test_specs_name_the_builtin_set_and_files_with_or_without_the_prefix(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", json.dumps(STRING))
    assert (
        preferences_from(f"prefs:{path}")
        == preferences_from(str(path))
        == list(read_preferences(path))
    )
    assert preferences_from("prefs:builtin") == builtin_preferences()


@pytest.fixture
def datasets():
    return pytest.importorskip(
        "datasets", reason="the optional datasets package is not installed (tinylm[datasets])"
    )


def test_the_hub_loader_reads_the_same_pairs_and_checks_rows(datasets, tmp_path):
    (tmp_path / "prefs").mkdir()  # not tmp_path: datasets reads "test" in a folder name as a split
    path = tmp_path / "prefs" / "p.jsonl"
    other = {"prompt": "Name a colour.", "chosen": "Red.", "rejected": "Seven."}
    write_lines(path, json.dumps(STRING), json.dumps(other))
    hub = list(load_hub_preferences("json", data_files=str(path), cache_dir=tmp_path / "c"))
    local = list(read_preferences(path))
    assert [(p.prompt, p.chosen, p.rejected) for p in hub] == [
        (p.prompt, p.chosen, p.rejected) for p in local
    ]
    assert [p.source for p in hub] == ["json[train] row 1", "json[train] row 2"]

    bad = tmp_path / "prefs" / "bad.jsonl"
    write_lines(bad, json.dumps(STRING), json.dumps({**other, "rejected": "Red."}))
    with pytest.raises(TinylmError, match=r"json\[train\] row 2: 'chosen' and 'rejected'"):
        list(load_hub_preferences("json", data_files=str(bad), cache_dir=tmp_path / "c2"))
    lacking = tmp_path / "prefs" / "lacking.jsonl"
    write_lines(lacking, json.dumps({"prompt": "q", "chosen": "a", "answer": "b"}))
    with pytest.raises(TinylmError, match="has no 'rejected' column"):
        load_hub_preferences("json", data_files=str(lacking), cache_dir=tmp_path / "c3")


@pytest.fixture(scope="module")
def template():
    chars = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ,.?+0123456789HWFBN")
    return ChatTemplate(add_chat_tokens(chars))


def test_only_the_final_reply_and_its_end_count(template):
    pair = parse_preference(LISTED, "x")
    chosen, rejected = render_pair(template, pair)
    tokenizer = template.tokenizer
    for rendered, reply in ((chosen, "4."), (rejected, "Four, or maybe five.")):
        counted = [i for i, m in zip(rendered.ids, rendered.mask, strict=True) if m]
        assert counted == [*tokenizer.encode_ordinary(reply), template.end_id]
        # the template's own mask also counts the earlier reply "Hello."
        whole = template.render(pair.conversation(reply))
        assert whole.ids == rendered.ids
        assert sum(whole.mask) == sum(rendered.mask) + len("Hello.") + 1
    assert chosen.source == rejected.source == "x"
    # the prompt's part is the same in both, so only the replies differ
    start = len(template.render_for_generation(pair.prompt))
    assert chosen.ids[:start] == rejected.ids[:start]
    assert render_reply(template, pair.prompt, "4.").mask == chosen.mask


def test_a_long_pair_has_its_replies_cut_to_the_context_with_the_prompt_whole(template):
    pair = parse_preference({"prompt": "a b?", "chosen": "yes it is", "rejected": "no"}, "x")
    chosen, rejected = render_pair(template, pair)
    # [BOS] <|user|> "a b?" <|end|> <|assistant|>: 8 ids, then the reply and <|end|>
    assert len(chosen.ids) == 8 + 9 + 1 and len(rejected.ids) == 8 + 2 + 1
    fitted = fit_pairs([(chosen, rejected)], block_size=10)
    assert (fitted.cut, fitted.dropped) == (1, 0)
    ((c, r),) = fitted.pairs
    assert c.ids == chosen.ids[:11] and c.mask == chosen.mask[:11]  # "yes" and no <|end|>
    assert template.tokenizer.decode([i for i, m in zip(c.ids, c.mask, strict=True) if m]) == "yes"
    assert r == rejected  # it fitted already
    # the prompt leaves no room for a reply, or the cut replies agree: dropped
    assert fit_pairs([(chosen, rejected)], block_size=6, allow_empty=True).dropped == 1
    twin = parse_preference(
        {"prompt": "a b?", "chosen": "yes it is", "rejected": "yes it was"}, "y"
    )
    fitted = fit_pairs([render_pair(template, twin), (chosen, rejected)], block_size=12)
    assert (len(fitted.pairs), fitted.cut, fitted.dropped) == (1, 1, 1)
    with pytest.raises(TinylmError, match="no pair fits the context .7 tokens"):
        fit_pairs([(chosen, rejected)], block_size=6)
    kept = fit_pairs([(chosen, rejected)], block_size=17)
    assert kept.pairs == [(chosen, rejected)] and kept.cut == kept.dropped == 0


def test_an_unknown_character_is_named_with_its_pair(template):
    pair = parse_preference({"prompt": "q", "chosen": "a", "rejected": "é"}, "p.jsonl:9")
    with pytest.raises(TinylmError, match="^p.jsonl:9: character 'é'"):
        render_pair(template, pair)


def test_the_builtin_pairs_prefer_the_true_answer_to_another_topics():
    conversations = builtin_conversations()
    pairs = builtin_preferences()
    assert len(pairs) == len(conversations) > 100
    answers = {c.messages[-1].content for c in conversations}
    for pair, conversation in zip(pairs, conversations, strict=True):
        assert pair.prompt == conversation.messages[:-1]
        assert pair.chosen == conversation.messages[-1].content
        assert pair.rejected in answers and pair.rejected != pair.chosen
        assert pair.prompt[-1].role == "user"
        parse_preference(pair.to_dict(), "round trip")  # every pair is a valid file line
    assert len({p.rejected for p in pairs}) > len(answers) // 2  # drawn across topics
    assert builtin_preferences() == pairs
    assert builtin_preferences(seed=7) != pairs


def test_the_held_out_split_is_seeded_disjoint_and_never_empties_the_training_set():
    pairs = [Preference((Message("user", str(i)),), "a", "b", str(i)) for i in range(20)]
    train, held = split_held_out(pairs, 0.25, seed=3)
    assert len(held) == 5 and len(train) == 15
    assert {p.source for p in train} | {p.source for p in held} == {str(i) for i in range(20)}
    assert split_held_out(pairs, 0.25, seed=3) == (train, held)
    assert split_held_out(pairs, 0.25, seed=4)[1] != held
    assert [int(p.source) for p in held] == sorted(int(p.source) for p in held)  # file order
    assert split_held_out(pairs, 0.0) == (pairs, [])
    assert len(split_held_out(pairs, 0.01)[1]) == 1  # a fraction above 0 holds one out
    assert split_held_out(pairs[:1], 0.5) == (pairs[:1], [])  # one pair: train on it
    with pytest.raises(TinylmError, match="held_out must be"):
        split_held_out(pairs, 1.0)
    with pytest.raises(TinylmError, match="no preference pairs"):
        split_held_out([], 0.1)
