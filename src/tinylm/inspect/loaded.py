"""The model being inspected: loaded once, then looked at through many views.

Every view (``next_token``, ``attention``, ``embeddings``, ``lens``) takes a
:class:`LoadedModel` and some text, and returns plain data. Loading a checkpoint
takes far longer than any single view, so a notebook or a web inspector loads a
run once and calls the views as often as it likes::

    from tinylm.inspect.loaded import LoadedModel
    from tinylm.inspect.next_token import next_token_distribution
    loaded = LoadedModel.from_run("runs/small")
    dist = next_token_distribution(loaded, "The with statement", temperature=0.8)

A model already in memory (just trained, or random) is wrapped directly with
``LoadedModel(model, tokenizer, name="mine")``.

The text a view receives is encoded as ``tinylm sample`` encodes a prompt: BOS
(when the tokenizer has one) and then the text, because every training document
starts that way and a model has never seen text without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinylm.data.prepared import check_tokenizer, load_prepared
from tinylm.errors import TinylmError
from tinylm.inference.loading import load_model
from tinylm.inspect.tokens import token_pieces, visible
from tinylm.run.folder import read_run_info
from tinylm.run_layout import RUN_FILE
from tinylm.terminal import printable
from tinylm.tokenizers.base import Tokenizer

#: How many training tokens :meth:`LoadedModel.token_frequencies` counts at most:
#: enough to rank a vocabulary, few enough to take a moment on any corpus.
FREQUENCY_SAMPLE = 20_000_000


@dataclass
class LoadedModel:
    """A model in eval mode, its tokenizer, and a name for titles.

    ``run_dir`` (the run folder, when loaded from one) lets views find the run's
    training data; ``step`` is the checkpoint's training step.
    """

    model: Any
    tokenizer: Tokenizer
    name: str = "model"
    step: int | None = None
    run_dir: Path | None = None
    _frequencies: np.ndarray | None = field(default=None, init=False, repr=False)
    _cache: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.model.eval()  # dropout off: a view must show what the model computes

    @classmethod
    def from_run(
        cls, path: str | os.PathLike, device: str = "cpu", which: str = "latest"
    ) -> LoadedModel:
        """Load a run folder's latest (or ``which="best"``) checkpoint, or a checkpoint folder."""

        model, tokenizer, meta = load_model(path, device, which)
        checkpoint = meta.path
        if tokenizer is None:
            raise TinylmError(
                f"checkpoint {checkpoint} has no tokenizer.json, so text cannot be encoded; "
                "point at a checkpoint saved with its tokenizer"
            )
        run_dir = run_folder(Path(path), checkpoint)
        return cls(model, tokenizer, name=run_dir.name, step=meta.step, run_dir=run_dir)

    # -- facts about the model ------------------------------------------------------------

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def label(self) -> str:
        """The run, as a plot title names it: ``small, step 800`` (control characters shown)."""
        name = printable(self.name, one_line=True)
        return name if self.step is None else f"{name}, step {self.step}"

    # -- text and tokens ------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """The ids a view runs on: BOS, then ``text``; checked against the model's limits."""
        if not isinstance(text, str) or not text:
            raise TinylmError("the text is empty; give some text for the model to read")
        bos = self.tokenizer.bos_id
        ids = ([] if bos is None else [bos]) + self.tokenizer.encode(text)
        limit = self.config.block_size
        if len(ids) > limit:
            raise TinylmError(
                f"the text is {len(ids)} tokens{' with BOS' if bos is not None else ''}, "
                f"more than the model's block_size of {limit}; shorten it"
            )
        return ids

    def as_batch(self, ids: list[int]) -> torch.Tensor:
        """``ids`` as a ``(1, T)`` tensor on the model's device."""
        return torch.tensor([ids], dtype=torch.long, device=self.device)

    def pieces(self, ids: list[int] | np.ndarray) -> list[str]:
        """Each token's own text (raw; :func:`visible` shows its whitespace)."""
        out = []
        for i in np.asarray(ids, dtype=np.int64).tolist():
            try:
                out.append(token_pieces(self.tokenizer, [i])[0])
            except (TinylmError, IndexError, KeyError):
                out.append(f"<id {i}>")  # an id the tokenizer leaves unused
        return out

    def token_id(self, token: str | int) -> int:
        """The id of one token, given as its id or as text that encodes to exactly it.

        ``␣`` in the text stands for a space, as plots show it, so a token with a
        leading space can be typed without quoting.
        """
        if isinstance(token, int) and not isinstance(token, bool):
            if not 0 <= token < self.config.vocab_size:
                raise TinylmError(
                    f"token id {token} is outside the vocabulary [0, {self.config.vocab_size})"
                )
            return token
        if not isinstance(token, str) or not token:
            raise TinylmError("a token must be a non-empty string or an id")
        text = token.replace("\u2423", " ")
        try:
            ids = self.tokenizer.encode(text)
        except TinylmError:
            raise TinylmError(
                f"token '{visible(token, spaces=True)}' is not in this model's vocabulary; "
                "give a token its tokenizer knows"
            ) from None
        if len(ids) != 1:
            shown = " ".join(f"[{visible(p, spaces=True)}]" for p in self.pieces(ids))
            raise TinylmError(
                f"'{visible(token, spaces=True)}' is not one token in this vocabulary "
                f"(it splits into {shown}); give a single token"
            )
        return ids[0]

    # -- layer and head numbers -----------------------------------------------------------

    def check_layer(self, layer: int | None) -> None:
        _check_index(layer, self.config.n_layer, "layer", "n_layer")

    def check_head(self, head: int | None) -> None:
        _check_index(head, self.config.n_head, "head", "n_head")

    def cached(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """``compute()`` once per key, kept read-only for later calls.

        For arrays that depend only on the weights (an embedding table), which a
        view would otherwise copy out of the model on every call. The weights are
        taken as fixed once loaded; wrap a changed model in a new ``LoadedModel``.
        """
        if key not in self._cache:
            array = compute()
            array.flags.writeable = False
            self._cache[key] = array
        return self._cache[key]

    # -- the run's training data ----------------------------------------------------------

    def token_frequencies(self) -> np.ndarray | None:
        """How often each id occurs in the run's training data, or None if it is not found.

        Counts the first :data:`FREQUENCY_SAMPLE` tokens of the prepared ``train``
        split the run recorded in ``run.json``; None when the run has no such data
        (a checkpoint copied on its own) or the data was made by another tokenizer.
        """
        if self._frequencies is None and self.run_dir is not None:
            self._frequencies = _count_training_tokens(
                self.run_dir, self.tokenizer, self.config.vocab_size
            )
        return self._frequencies


def run_folder(given: Path, checkpoint: Path) -> Path:
    """The run a path belongs to: the path itself, or the folder holding a checkpoint."""
    if given.resolve() == checkpoint.resolve():
        return checkpoint.parent
    return given


def _check_index(value: int | None, size: int, what: str, field_name: str) -> None:
    if value is not None and not 0 <= value < size:
        raise TinylmError(
            f"{what} {value} does not exist: the model has {field_name}={size}, "
            f"so {what}s are numbered 0 to {size - 1}"
        )


def _count_training_tokens(
    run_dir: Path, tokenizer: Tokenizer, vocab_size: int
) -> np.ndarray | None:

    if not (run_dir / RUN_FILE).is_file():
        return None  # a checkpoint copied on its own
    try:
        info = read_run_info(run_dir)
        if "prepared" not in info:  # a chat fine-tune: conversations, no prepared tokens
            return None
        data = load_prepared(run_dir / info["prepared"])  # an absolute path replaces run_dir
        check_tokenizer(data, tokenizer)
    except (OSError, TinylmError):
        return None
    tokens = np.asarray(data.train[:FREQUENCY_SAMPLE], dtype=np.int64)
    if tokens.size == 0 or tokens.max() >= vocab_size:
        return None
    return np.bincount(tokens, minlength=vocab_size)
