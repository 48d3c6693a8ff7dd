"""A built-in conversation set, made from Python's own help topics, so chat works offline.

Python ships the text of ``help()``'s topics in ``pydoc_data.topics``: about eighty
sections of the language reference ("The "assert" statement", "Boolean
operations", ...). Each becomes a few short question-and-answer conversations:

* the **answer** is the topic's first paragraph: the text after its heading (the
  first line, underlined with ``*``), up to the first blank line, its lines joined
  by single spaces; a final ``:`` (the paragraph introduced a code sample, which
  is left out) becomes ``.``. Topics whose first paragraph is shorter than
  :data:`MIN_ANSWER_CHARS` are skipped, as are answers longer than
  :data:`MAX_ANSWER_CHARS`, which a small context could not hold.
* the **question** names the heading in :data:`CONVERSATIONS_PER_TOPIC` of the
  :data:`QUESTIONS` phrasings, drawn without repetition by ``random.Random(seed)``;
* each conversation opens with :data:`SYSTEM_PROMPT` with chance 1 in :data:`SYSTEM_EVERY`;
* the list is shuffled by the same generator.

Topics are visited in sorted order and every choice comes from the seeded
generator, so a seed gives the same conversations every time on one Python
version (the topics' text changes between Python releases).
"""

from __future__ import annotations

import random
import re
from pydoc_data.topics import topics

from tinylm.chat.conversations import Conversation, Message

QUESTIONS = (
    "What is {}?",
    "Can you explain {} in Python?",
    "Tell me about {}.",
    "What does the Python reference say about {}?",
    "Briefly, what is meant by {} in Python?",
    "I am learning Python. What is {}?",
    "Describe {} for me.",
    "Give me a short explanation of {}.",
)
CONVERSATIONS_PER_TOPIC = 4
SYSTEM_PROMPT = "You answer questions about the Python language briefly and exactly."
SYSTEM_EVERY = 4
MIN_ANSWER_CHARS = 40
MAX_ANSWER_CHARS = 600
DEFAULT_SEED = 1337

_UNDERLINE = re.compile(r"^[*=\-]+$")


def topic_answer(text: str) -> tuple[str, str] | None:
    """``(heading, first paragraph)`` of one topic's text, or ``None`` if it has no usable one."""
    lines = text.strip("\n").split("\n")
    if len(lines) < 3 or not _UNDERLINE.match(lines[1].strip()):
        return None
    heading = lines[0].strip()
    paragraph: list[str] = []
    for line in lines[2:]:
        if line.strip():
            paragraph.append(line.strip())
        elif paragraph:
            break
    answer = " ".join(" ".join(paragraph).split())
    if answer.endswith(":"):
        answer = answer[:-1] + "."
    if not MIN_ANSWER_CHARS <= len(answer) <= MAX_ANSWER_CHARS:
        return None
    return heading, answer


def builtin_conversations(seed: int = DEFAULT_SEED) -> list[Conversation]:
    """The built-in conversations for ``seed`` (the construction is in the module docstring)."""
    rng = random.Random(seed)
    conversations = []
    for name in sorted(topics):
        found = topic_answer(topics[name])
        if found is None:
            continue
        heading, answer = found
        for question in rng.sample(QUESTIONS, CONVERSATIONS_PER_TOPIC):
            messages = [Message("user", question.format(heading)), Message("assistant", answer)]
            if rng.randrange(SYSTEM_EVERY) == 0:
                messages.insert(0, Message("system", SYSTEM_PROMPT))
            conversations.append(Conversation(tuple(messages), f"builtin topic {name!r}"))
    rng.shuffle(conversations)
    return conversations
