"""Reading conversations: valid JSON lines become Conversations, every bad line one error."""

from __future__ import annotations

import json

import pytest

from tinylm.chat.conversations import (
    Conversation,
    Message,
    load_hub_conversations,
    parse_conversation,
    read_conversations,
)
from tinylm.errors import TinylmError
from tinylm.untrusted_files import MAX_JSON_DEPTH

GOOD = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4.", "name": "bot"},
    ],
    "id": 7,
}


def write_lines(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_a_file_reads_into_conversations_with_file_line_sources(tmp_path):
    second = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}
    path = write_lines(
        tmp_path / "chat.jsonl", [json.dumps(GOOD).encode(), b"  ", json.dumps(second).encode()]
    )
    conversations = list(read_conversations(path))
    assert conversations == [
        Conversation(
            (
                Message("system", "Be brief."),
                Message("user", "What is 2 + 2?"),
                Message("assistant", "4."),
            ),
            f"{path}:1",
        ),
        Conversation((Message("user", "hi"), Message("assistant", "")), f"{path}:3"),
    ]
    assert conversations[1].to_dict() == second


BAD_LINES = [
    (b'{"messages": [', "is not valid JSON"),
    (b"\xff\xfe not text", "is not UTF-8"),
    (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "nests arrays or objects"),
    (b"[1, 2]", "holds a list, not a JSON object"),
    (b'{"text": "hello"}', "field 'messages' is missing"),
    (b'{"messages": "hello"}', "field 'messages' is a string"),
    (b'{"messages": []}', "'messages' is empty"),
    (b'{"messages": [3]}', "message 1 holds the number 3"),
    (b'{"messages": [{"role": "bot", "content": "x"}]}', "field 'role' is a string \\('bot'\\)"),
    (b'{"messages": [{"role": 1, "content": "x"}]}', "field 'role' is the number 1"),
    (b'{"messages": [{"role": "user"}]}', "field 'content' is missing"),
    (b'{"messages": [{"role": "user", "content": null}]}', "field 'content' is null"),
    (b'{"messages": [{"role": "user", "content": ["x"]}]}', "field 'content' is a list"),
    (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "lone surrogate"),
    (b'{"messages": [{"role": "user", "content": "hi"}]}', "no assistant message"),
    (
        b'{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, '
        b'{"role": "assistant", "content": "c"}]}',
        "message 2 is a system message",
    ),
]


@pytest.mark.parametrize(("line", "problem"), BAD_LINES)
def test_each_bad_line_is_one_error_naming_file_and_line(tmp_path, line, problem):
    path = write_lines(tmp_path / "chat.jsonl", [json.dumps(GOOD).encode(), b"", line])
    with pytest.raises(TinylmError, match=problem) as caught:
        list(read_conversations(path))
    message = str(caught.value)
    assert message.startswith(f"{path}:3") and "\n" not in message


def test_a_missing_file_and_a_folder_are_refused_by_name(tmp_path):
    with pytest.raises(TinylmError, match="conversation file .* does not exist"):
        list(read_conversations(tmp_path / "nope.jsonl"))
    with pytest.raises(TinylmError, match="is a folder"):
        list(read_conversations(tmp_path))


def test_a_conversation_waiting_for_a_reply_parses_only_when_asked():
    waiting = {"messages": [{"role": "user", "content": "hi"}]}
    assert parse_conversation(waiting, "x", require_assistant=False).messages == (
        Message("user", "hi"),
    )
    with pytest.raises(TinylmError, match="x: no assistant message"):
        parse_conversation(waiting, "x")


@pytest.fixture
def datasets():
    return pytest.importorskip(
        "datasets", reason="the optional datasets package is not installed (tinylm[datasets])"
    )


def test_the_hub_loader_reads_a_local_file_into_the_same_conversations(datasets, tmp_path):
    (tmp_path / "chats").mkdir()  # not tmp_path: datasets reads "test" in a folder name as a split
    rows = [
        GOOD,
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
    ]
    path = tmp_path / "chats" / "chat.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    hub = list(load_hub_conversations("json", data_files=str(path), cache_dir=tmp_path / "cache"))
    local = list(read_conversations(path))
    assert [c.messages for c in hub] == [c.messages for c in local]
    assert [c.source for c in hub] == ["json[train] row 1", "json[train] row 2"]


def test_the_hub_loader_checks_rows_and_names_the_field_setting(datasets, tmp_path):
    (tmp_path / "chats").mkdir()
    path = tmp_path / "chats" / "chat.jsonl"
    bad = {"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]}
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(TinylmError, match=r"json\[train\] row 2: message 2: field 'role'"):
        list(load_hub_conversations("json", data_files=str(path), cache_dir=tmp_path / "c"))
    with pytest.raises(TinylmError, match="no field 'turns'.*set messages_field"):
        load_hub_conversations(
            "json", data_files=str(path), cache_dir=tmp_path / "c", messages_field="turns"
        )
