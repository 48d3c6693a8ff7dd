"""Multiple-choice tasks: items of a context, its candidate continuations and the true one.

A benchmark such as HellaSwag or ARC is a list of :class:`MCItem`: a ``context``,
two or more ``choices`` and the index of the right one (``label``). A model
answers by the choice whose text it finds most likely after the context; the
scoring is :mod:`tinylm.inference.benchmarks`. This module only reads items, and
needs neither torch nor a model.

Where items come from (:func:`load_task`):

* a **JSONL file**, one item per line, in any of three layouts, told apart by
  their fields (lines of one file may even mix them):

  - generic: ``{"context": str, "choices": [str, ...], "label": int}``;
  - HellaSwag's: ``ctx_a``, ``ctx_b``, ``activity_label``, ``endings`` and
    ``label`` (an int, or a digit string as on the Hub). The context is
    ``activity_label + ": " + ctx_a + " " + ctx_b.capitalize()`` and it and each
    ending are cleaned as lm-evaluation-harness cleans them (:func:`hellaswag_clean`);
  - ARC's (the Hub's layout): ``question``, ``choices: {"text": [...], "label":
    [...]}``, ``answerKey``. The context is ``"Question: " + question +
    "\\nAnswer:"``, lm-evaluation-harness's prompt for ARC;

* a **Hugging Face dataset** with the same fields, through the hub loader
  (:func:`load_hub_task`, :mod:`tinylm.data.hub`);
* a **built-in task** made from text that ships with Python (:data:`BUILTIN_TASKS`).

The built-in task ``pydocs-continue`` asks which of four two-word continuations
follows a passage of Python's documentation. It is built so that only a model
that reads the context can beat chance (:func:`pydocs_continue`):

1. the text is the tail of the built-in corpus (its documents in order, joined by
   newlines): the last :data:`HELD_OUT_FRACTION` of its characters, from the first
   whitespace on. ``tinylm train``'s default split holds out the last tenth of the
   corpus (a corpus of so few documents is split by tokens; see
   :mod:`tinylm.data.prepare`), so a model trained on the built-in corpus with the
   default split has not trained on these passages;
2. its words (split on whitespace, so code is flattened onto one line) give a
   passage every :data:`STRIDE_WORDS` words: :data:`CONTEXT_WORDS` words of context,
   then the true continuation, the next :data:`CONTINUATION_WORDS` words
   (consecutive contexts overlap; their continuations do not);
3. the passages, in the order of ``random.Random(seed)``, fill groups of
   :data:`GROUP_SIZE`, each passage going into the first group not yet full whose
   continuations all differ from its own (groups left short are dropped). The items
   of a group share one set of choices, the group's four continuations, shuffled
   per item by the same generator: each continuation is the answer once and a
   distractor three times.

Why: a model that scores a continuation by how likely it is on its own, whatever
the context (an untrained model that prefers fewer tokens, or one that prefers
common words), picks the same continuation for every item of a group and so is
right exactly once in four: its acc and acc_norm are chance, 0.25, exactly. Only
the fit between context and continuation lifts a model above it. Short
continuations keep that fit a large part of the score; with six-word
continuations drawn from other passages, the first construction, a small model's
choice mostly followed each continuation's own likelihood. Items are listed in the
order of the text, named ``word N`` by their first word.

The passages follow the text of the running Python's ``pydoc_data.topics``, which
changes between Python releases.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.data.corpus import builtin_documents
from tinylm.data.hub import load_hub_rows
from tinylm.errors import TinylmError
from tinylm.untrusted_files import Record, read_json_lines

_HINT = "fix or remove that item"


@dataclass(frozen=True)
class MCItem:
    """One question: the ``context``, its candidate continuations, and the right one's index.

    ``source`` says where it was read (``file:line``, ``dataset[split] row N``), for
    messages and per-item results.
    """

    context: str
    choices: tuple[str, ...]
    label: int
    source: str = ""


@dataclass(frozen=True)
class MCTask:
    """A named list of items; ``name`` is how reports and per-item results refer to it."""

    name: str
    items: tuple[MCItem, ...]

    @property
    def chance(self) -> float:
        """The accuracy of picking a choice at random: the mean of ``1 / len(choices)``."""
        if not self.items:
            return float("nan")
        return sum(1 / len(item.choices) for item in self.items) / len(self.items)


# -- one row, in any of the three layouts --------------------------------------------------


def hellaswag_clean(text: str) -> str:
    """HellaSwag text as lm-evaluation-harness scores it.

    The WikiHow part of the data carries markup: `` [title]`` ends a title (it
    becomes ``". "``), other ``[...]`` tags go, and the double spaces left behind
    become one. Surrounding whitespace is stripped first.
    """
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _choices(values: list[Any], record: Record, key: str) -> tuple[str, ...]:
    if len(values) < 2 or not all(isinstance(v, str) and v for v in values):
        raise record.error(key, "a list of two or more non-empty strings", values)
    return tuple(values)


def generic_item(row: Any, source: str) -> MCItem:
    """``{"context", "choices", "label"}``: the item as it stands."""
    record = Record(row, source, _HINT)
    context = record.str("context")
    choices = _choices(record.list("choices"), record, "choices")
    label = record.int("label", minimum=0, maximum=len(choices) - 1)
    return MCItem(context, choices, label, source)


def hellaswag_item(row: Any, source: str) -> MCItem:
    """A HellaSwag row: the activity label and both context halves, then the four endings."""
    record = Record(row, source, _HINT)
    context = f"{record.str('ctx_a')} {record.str('ctx_b').capitalize()}"
    context = hellaswag_clean(f"{record.str('activity_label')}: {context}")
    endings = _choices(record.list("endings"), record, "endings")
    choices = tuple(hellaswag_clean(ending) for ending in endings)
    raw = record.data.get("label")
    if isinstance(raw, str) and raw.isdigit():  # the Hub stores it as text
        record = Record({**record.data, "label": int(raw)}, source, _HINT)
    label = record.int("label", minimum=0, maximum=len(choices) - 1)
    return MCItem(context, choices, label, source)


def arc_item(row: Any, source: str) -> MCItem:
    """An ARC row: the question as lm-evaluation-harness prompts it, the answer by its key."""
    record = Record(row, source, _HINT)
    question = record.str("question")
    options = record.record("choices")
    texts = _choices(options.list("text"), options, "text")
    labels = options.list("label")
    if len(labels) != len(texts):
        raise options.error("label", f"a list of {len(texts)} labels, one per text", labels)
    key = record.data.get("answerKey")
    if key not in labels:
        raise record.error("answerKey", f"one of the choices' labels {labels}", key)
    return MCItem(f"Question: {question}\nAnswer:", texts, labels.index(key), source)


def item_from_row(row: Any, source: str) -> MCItem:
    """The item in ``row``, whichever layout it has (told apart by their fields)."""
    if isinstance(row, dict):
        if "endings" in row:
            return hellaswag_item(row, source)
        if "answerKey" in row:
            return arc_item(row, source)
        if "context" in row:
            return generic_item(row, source)
    Record(row, source, _HINT)  # a non-object gets its own message
    raise TinylmError(
        f"{source}: no field 'context' (nor HellaSwag's 'endings' or ARC's 'answerKey'); "
        'write items as {"context": ..., "choices": [...], "label": N}'
    )


# -- where items come from -----------------------------------------------------------------


def load_task_file(path: str | os.PathLike) -> MCTask:
    """The items of a JSONL file, one per non-blank line; a bad line fails as ``file:line``."""
    items = [
        item_from_row(value, source) for value, source in read_json_lines(path, "task file", _HINT)
    ]
    return _task(Path(path).stem, items, str(path))


def load_hub_task(
    name: str, split: str = "validation", *, config: str | None = None, **load_kwargs: Any
) -> MCTask:
    """The items of a Hugging Face dataset split (or local files through ``datasets``).

    ``name``, ``split``, ``config`` and ``load_kwargs`` are those of
    :func:`tinylm.data.hub.load_hub_rows`; ``load_hub_task("json", "train",
    data_files="items.jsonl")`` reads a local file. Rows are named ``name[split] row N``.
    """
    rows = load_hub_rows(name, split, config=config, **load_kwargs)
    label = f"{name}[{split}]"
    items = [item_from_row(row, f"{label} row {n}") for n, row in enumerate(rows, 1)]
    return _task(name.rstrip("/").rpartition("/")[2] or name, items, label)


def _task(name: str, items: Iterable[MCItem], where: str) -> MCTask:
    task = MCTask(name, tuple(items))
    if not task.items:
        raise TinylmError(f"{where} holds no items; give a file with one item per line")
    return task


# -- the built-in task ---------------------------------------------------------------------

HELD_OUT_FRACTION = 0.08
CONTEXT_WORDS = 24
CONTINUATION_WORDS = 2
STRIDE_WORDS = 4
GROUP_SIZE = 4
DEFAULT_SEED = 1234


def held_out_text(fraction: float = HELD_OUT_FRACTION) -> str:
    """The last ``fraction`` of the built-in corpus, from its first whitespace on."""
    text = "\n".join(builtin_documents())
    tail = text[len(text) - int(len(text) * fraction) :]
    first_space = re.search(r"\s", tail)
    return tail[first_space.start() :] if first_space else ""


def held_out_passages() -> list[tuple[int, str, str]]:
    """``(first word's index, context, true continuation)`` of every built-in passage.

    A passage starts every :data:`STRIDE_WORDS` words of :func:`held_out_text`: its first
    :data:`CONTEXT_WORDS` words are the context, the next :data:`CONTINUATION_WORDS`
    the continuation.
    """
    words = held_out_text().split()
    size = CONTEXT_WORDS + CONTINUATION_WORDS
    return [
        (i, " ".join(words[i : i + CONTEXT_WORDS]), " ".join(words[i + CONTEXT_WORDS : i + size]))
        for i in range(0, len(words) - size + 1, STRIDE_WORDS)
    ]


def _groups(endings: list[str], rng: random.Random) -> list[list[int]]:
    """Passages in groups of :data:`GROUP_SIZE` whose continuations all differ.

    Passages are taken in ``rng``'s order, each into the first group not yet full that
    holds no continuation equal to its own; groups left short are dropped.
    """
    order = list(range(len(endings)))
    rng.shuffle(order)
    groups: list[list[int]] = []
    open_groups: list[list[int]] = []
    for i in order:
        for group in open_groups:
            if all(endings[j] != endings[i] for j in group):
                group.append(i)
                break
        else:
            group = [i]
            open_groups.append(group)
            groups.append(group)
        if len(group) == GROUP_SIZE:
            open_groups.remove(group)
    return [group for group in groups if len(group) == GROUP_SIZE]


def pydocs_continue(seed: int = DEFAULT_SEED) -> MCTask:
    """The built-in task (its construction is in the module docstring)."""
    passages = held_out_passages()
    endings = [ending for _, _, ending in passages]
    rng = random.Random(seed)
    items = []
    for group in _groups(endings, rng):
        for i in group:
            start, context, truth = passages[i]
            choices = [endings[j] for j in group]
            rng.shuffle(choices)
            item = MCItem(context, tuple(choices), choices.index(truth), f"word {start + 1}")
            items.append((start, item))
    return MCTask("pydocs-continue", tuple(item for _, item in sorted(items, key=lambda p: p[0])))


#: Built-in task name -> the function that makes it (offline, deterministic).
BUILTIN_TASKS: dict[str, Callable[[], MCTask]] = {"pydocs-continue": pydocs_continue}


def load_task(spec: str | os.PathLike) -> MCTask:
    """A built-in task by name (:data:`BUILTIN_TASKS`) or a JSONL file of items."""
    if isinstance(spec, str) and spec in BUILTIN_TASKS:
        return BUILTIN_TASKS[spec]()
    if not os.path.exists(spec) and not os.path.splitext(spec)[1]:
        names = ", ".join(BUILTIN_TASKS)
        raise TinylmError(
            f"no task {os.fspath(spec)!r}: give a built-in task ({names}) or a JSONL file of items"
        )
    return load_task_file(spec)
