"""The runs a server holds: each loaded once at start and shared by every request.

A request names a run; the server never loads weights while answering, so a page
stays fast and a bad request cannot leave a half-loaded model behind.

Sharing between threads. ``ThreadingHTTPServer`` answers each request on its own
thread, so two requests may reach one model at the same time. The weights are
never written after loading, and torch's grad mode is per thread, so concurrent
no-grad forwards would most likely be fine; but PyTorch does not promise that
calling one ``nn.Module`` from several threads is safe, and on a CPU the forwards
would only fight over the cores torch already uses inside one forward. So each
run has a lock, and :meth:`ServedRun.inference` holds it for one computation at a
time: one forward, or one generated token, never a whole generation, so a long
stream advances token by token between the other requests instead of stalling
them. Different runs have different locks and proceed in parallel.

Generation (the Generate and Chat views) runs on a ``DecodeEngine`` built once per
run when it loads, in the weight format ``tinylm serve --weights`` chose: packed
copies of the weights that never change the model. The other views read the
model itself, the readable float32 path, since they show its inner workings.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinylm.chat.template import ChatTemplate, load_chat_template
from tinylm.data.prepared import check_tokenizer, load_prepared
from tinylm.errors import TinylmError
from tinylm.inference.engine import DecodeEngine
from tinylm.inference.loading import load_model
from tinylm.inspect.loaded import LoadedModel, run_folder
from tinylm.run.folder import has_checkpoints, read_run_info
from tinylm.run_layout import MODEL_FILE, RUNS_ROOT
from tinylm.tokenizers.base import Tokenizer

if TYPE_CHECKING:
    from tinylm.checkpoint.meta import CheckpointMeta


@dataclass
class ServedRun:
    """One loaded model (as ``tinylm.inspect`` views take it), its decode engine, a lock."""

    name: str
    loaded: LoadedModel  # model in eval mode, tokenizer, run_dir
    meta: CheckpointMeta  # read_checkpoint_meta's answer: step, configs, metrics, ...
    info: dict[str, Any]  # run.json, or {} for a lone checkpoint
    engine: DecodeEngine  # what generates: packed copies of the model's weights, built once
    default_prompt: str = ""  # the start of the run's validation text, when it is at hand
    template: ChatTemplate | None = None  # a chat model's template; None: it only continues text
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.loaded.tokenizer

    @property
    def run_dir(self) -> Path:
        return self.loaded.run_dir

    @contextlib.contextmanager
    def inference(self) -> Iterator[LoadedModel]:
        """The loaded model, for one computation: this run's lock held, gradients off."""
        import torch

        with self.lock, torch.no_grad():
            yield self.loaded


def is_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / MODEL_FILE).is_file()


def is_run(path: Path) -> bool:
    """A run folder with at least one checkpoint, or a checkpoint folder itself."""

    return is_checkpoint(path) or (path.is_dir() and has_checkpoints(path))


def find_runs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The run folders ``paths`` mean, in order.

    Each path is a run, a checkpoint, or a folder of runs (``runs/``, or the
    folder ``tinylm compare`` writes its variants into), which stands for every
    run directly inside it. No path means ``runs/`` in the working directory.
    """
    if not paths:
        if not RUNS_ROOT.is_dir():
            raise TinylmError(
                "no run named and no runs/ folder here; train one with `tinylm train` "
                "or name a run folder"
            )
        paths = [RUNS_ROOT]
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if is_run(path):
            found.append(path)
            continue
        if not path.exists():
            raise TinylmError(f"run {path} does not exist; name a run or checkpoint folder")
        inside = (
            sorted(p for p in path.iterdir() if p.is_dir() and is_run(p)) if path.is_dir() else []
        )
        if not inside:
            raise TinylmError(
                f"{path} is not a run, a checkpoint or a folder of runs (no checkpoint found); "
                "train one with `tinylm train`"
            )
        found.extend(inside)
    return found


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Short names for the page: the folder name, with its parent's where two collide."""
    base = [p.name or str(p) for p in paths]
    names = [
        f"{p.parent.name}/{p.name}" if base.count(b) > 1 else b
        for p, b in zip(paths, base, strict=True)
    ]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):  # still equal (one folder given twice): number them
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[i] = f"{name}-{seen[name]}"
    return names


def load_run(
    name: str, path: Path, device: str = "cpu", which: str = "latest", weights: str = "float32"
) -> ServedRun:
    """Load one run's model (eval mode), tokenizer and chat template, and read its run.json.

    Its decode engine is built here, once, in the weight format ``weights``.
    """

    model, tokenizer, meta = load_model(path, device=device, which=which)
    if tokenizer is None:
        raise TinylmError(
            f"run {path} has no tokenizer in its checkpoint; the inspector needs one to "
            "turn text into ids"
        )
    run_dir = run_folder(path, meta.path)
    try:
        info = read_run_info(run_dir)
    except TinylmError:
        info = {}  # a lone checkpoint: the page shows its config without run details
    loaded = LoadedModel(model, tokenizer, name=name, step=meta.step, run_dir=run_dir)
    template = load_chat_template(meta.chat_template_file, tokenizer)
    engine = DecodeEngine(model, weights)
    prompt = default_prompt(run_dir, info, tokenizer)
    return ServedRun(name, loaded, meta, info, engine, prompt, template=template)


#: The longest prompt :func:`default_prompt` offers: a line's worth, quick in every view.
DEFAULT_PROMPT_CHARS = 40


def default_prompt(run_dir: Path, info: dict[str, Any], tokenizer: Tokenizer) -> str:
    """The page's first prompt: the start of the run's own validation text, or "".

    A prompt from elsewhere may hold characters the run's tokenizer has never seen
    (a char model trained on names knows no "W"), and every view would open on an
    error. The prepared data ``tinylm train`` cached (``run.json``'s ``prepared``)
    is text the tokenizer made; when it is gone, or was made by another tokenizer,
    the prompt starts empty. Cut at the first non-blank line's end, or at a space before
    ``DEFAULT_PROMPT_CHARS``.
    """
    prepared = info.get("prepared")
    if not isinstance(prepared, str) or not prepared:
        return ""
    try:
        data = load_prepared(run_dir / prepared)
        check_tokenizer(data, tokenizer)
        ids = [int(i) for i in data.val[: 4 * DEFAULT_PROMPT_CHARS]]
        text = _first_line(ids, tokenizer)
    except (TinylmError, OSError, ValueError):
        return ""
    if len(text) > DEFAULT_PROMPT_CHARS:
        cut = text.rfind(" ", 0, DEFAULT_PROMPT_CHARS + 1)
        text = text[: cut if cut > 0 else DEFAULT_PROMPT_CHARS]
    return text.strip()


def load_runs(
    paths: Sequence[str | os.PathLike],
    device: str = "cpu",
    which: str = "latest",
    on_load: Callable[[str, Path], None] | None = None,
    weights: str = "float32",
) -> dict[str, ServedRun]:
    """Every run ``paths`` mean (see :func:`find_runs`), by name; ``on_load`` reports each.

    ``weights``: the format of every run's decode engine (``DecodeEngine``'s formats).
    """
    folders = find_runs(paths)
    runs = {}
    for name, folder in zip(unique_names(folders), folders, strict=True):
        if on_load is not None:
            on_load(name, folder)
        runs[name] = load_run(name, folder, device, which, weights)
    return runs


def _first_line(ids: list[int], tokenizer: Tokenizer) -> str:
    """The first whole, non-blank line of the documents in ``ids``.

    The validation split may begin inside a document (a file cut in two), so unless
    it begins with a document boundary the text up to the first line's end (or, in
    one long line, the first space) is dropped.
    """
    specials = {tokenizer.bos_id, tokenizer.eos_id} - {None}
    documents: list[list[int]] = [[]]
    for i in ids:
        if i in specials:
            documents.append([])
        else:
            documents[-1].append(i)
    text = "\n".join(tokenizer.decode(d) for d in documents if d).replace("\ufffd", "")
    if ids and ids[0] not in specials:
        newline = text.find("\n")
        text = text[newline + 1 :] if newline >= 0 else text[text.find(" ") + 1 :]
    return next((line for line in text.split("\n") if line.strip()), "")
