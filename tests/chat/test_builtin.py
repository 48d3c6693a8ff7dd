"""The built-in conversations: deterministic, valid, and built as documented."""

from __future__ import annotations

import json
from pydoc_data.topics import topics

from tinylm.chat.builtin import (
    CONVERSATIONS_PER_TOPIC,
    QUESTIONS,
    SYSTEM_PROMPT,
    builtin_conversations,
    topic_answer,
)
from tinylm.chat.conversations import parse_conversation


def test_a_seed_gives_the_same_conversations_and_another_seed_others():
    first = builtin_conversations(seed=5)
    assert [c.to_dict() for c in first] == [c.to_dict() for c in builtin_conversations(seed=5)]
    assert [c.to_dict() for c in first] != [c.to_dict() for c in builtin_conversations(seed=6)]


def test_there_are_a_few_hundred_and_every_one_validates_as_a_file_line():
    conversations = builtin_conversations()
    assert 200 <= len(conversations) <= 1000
    for c in conversations:
        line = json.dumps(c.to_dict())
        assert parse_conversation(json.loads(line), c.source).messages == c.messages
    with_system = sum(c.messages[0].role == "system" for c in conversations)
    assert 0 < with_system < len(conversations)
    assert all(
        c.messages[0].content == SYSTEM_PROMPT for c in conversations[:50] if len(c.messages) == 3
    )


def test_each_topic_answers_with_its_first_paragraph_under_distinct_questions():
    heading, answer = topic_answer(topics["bltin-null-object"])
    assert heading == "The Null Object"
    # the paragraph after the heading, lines joined by single spaces (checked by hand)
    assert answer == (
        "This object is returned by functions that don’t explicitly return a value. It "
        'supports no special operations. There is exactly one null object, named "None" (a '
        'built-in name). "type(None)()" produces the same singleton.'
    )
    asked = [
        c.messages[-2].content for c in builtin_conversations() if c.messages[-1].content == answer
    ]
    assert len(asked) == len(set(asked)) == CONVERSATIONS_PER_TOPIC
    assert all(q in {t.format(heading) for t in QUESTIONS} for q in asked)


def test_a_paragraph_that_introduces_code_ends_with_a_full_stop():
    text = 'The "x" statement\n*****\n\nX statements are a convenient way to\ndo this:\n\n   x\n'
    assert topic_answer(text) == (
        'The "x" statement',
        "X statements are a convenient way to do this.",
    )
    assert topic_answer("no heading here\nat all\n") is None
