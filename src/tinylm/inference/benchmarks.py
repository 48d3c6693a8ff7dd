"""Multiple-choice benchmarks, scored by log-likelihood as lm-evaluation-harness scores them.

For each item (:mod:`tinylm.data.mc_tasks`) the model reads the context and each
choice in turn; the choice's score is the summed log-probability of its tokens
given the context. The conventions are lm-evaluation-harness's (version 0.4) for
HellaSwag- and ARC-style tasks, so that the numbers mean what they mean there:

* **the continuation** is the choice after a target delimiter, a space:
  ``context`` then ``" " + choice``;
* **tokens** (:func:`encode_pair`): whitespace at the end of the context moves to
  the start of the continuation; the context is encoded as a prompt (BOS first,
  as every training document starts), the context and continuation together the
  same way, and the continuation's tokens are those of the whole past the
  context's length. With BPE this keeps the tokens the text would get in one
  piece. An empty context scores the continuation after BOS alone;
* **a long input** (:func:`model_input`) is cut on the left: the last
  ``block_size + 1`` tokens of context and continuation, less the final one, go in;
* **the metrics** (:class:`ItemResult`): ``acc`` counts an item right when its
  label is the choice of highest log-likelihood; ``acc_norm`` divides each by the
  choice's length in characters first (lm-evaluation-harness's ``acc_norm``), and
  ``acc_bytes`` by its length in UTF-8 bytes (its ``acc_bytes``). Neither length
  counts the delimiter. A tie goes to the first choice, as ``numpy.argmax`` does.

Items are scored in batches: all (context, choice) requests, longest first, right-padded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tinylm.data.mc_tasks import MCItem, MCTask
from tinylm.errors import SettingError, TinylmError
from tinylm.inference.sampling import prompt_ids
from tinylm.progress import progress_bar
from tinylm.tokenizers.base import Tokenizer

#: What joins a context and a choice (lm-evaluation-harness's ``target_delimiter``).
TARGET_DELIMITER = " "

#: A request: the context's token ids and the continuation's.
Request = tuple[list[int], list[int]]


# -- tokens ---------------------------------------------------------------------------------


def encode_pair(tokenizer: Tokenizer, context: str, continuation: str) -> Request:
    """The context's and the continuation's token ids, split as the whole text encodes."""
    if not context:
        if tokenizer.bos_id is None:
            raise TinylmError(
                "an item has an empty context and this tokenizer has no BOS token to "
                "start from; give every item a context"
            )
        ids = tokenizer.encode(continuation)
        if ids and ids[0] == tokenizer.bos_id:
            return ids[:1], ids[1:]
        return [tokenizer.bos_id], ids
    stripped = context.rstrip()
    continuation = context[len(stripped) :] + continuation
    whole = prompt_ids(tokenizer, stripped + continuation)
    context_ids = prompt_ids(tokenizer, stripped)
    return context_ids, whole[len(context_ids) :]


def item_requests(tokenizer: Tokenizer, item: MCItem) -> list[Request]:
    """One request per choice of ``item``."""
    return [encode_pair(tokenizer, item.context, TARGET_DELIMITER + c) for c in item.choices]


def model_input(request: Request, block_size: int) -> list[int]:
    """The ids the model reads for ``request``: context and continuation, cut on the left
    to ``block_size + 1`` tokens, less the last (which is only predicted)."""
    context, continuation = request
    return (context + continuation)[-(block_size + 1) :][:-1]


# -- scoring --------------------------------------------------------------------------------


@torch.no_grad()
def loglikelihoods(
    model: nn.Module,
    requests: Sequence[Request],
    batch_size: int = 32,
    progress: bool = True,
) -> list[float]:
    """The summed log-probability (nats) of each request's continuation given its context.

    Requests are scored longest first, ``batch_size`` at a time, each row padded on
    the right (a causal model's earlier positions never see the padding). The
    model is in eval mode meanwhile; the progress bar counts requests.
    """
    if batch_size < 1:
        raise SettingError(f"batch_size must be at least 1, got {batch_size}", "batch_size")
    block_size = model.config.block_size
    for number, (_, continuation) in enumerate(requests, 1):
        if not continuation or len(continuation) > block_size:
            raise TinylmError(
                f"request {number}'s continuation is {len(continuation)} tokens; the model "
                f"scores 1 to {block_size} (its block_size); shorten that choice"
            )
    device = next(model.parameters()).device
    inputs = [model_input(request, block_size) for request in requests]
    order = sorted(range(len(requests)), key=lambda i: -len(inputs[i]))
    scores = [0.0] * len(requests)
    was_training = model.training
    model.eval()
    try:
        with progress_bar(progress, total=len(requests), desc="score", unit=" choices") as bar:
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                batch = [inputs[i] for i in chosen]
                targets = [requests[i][1] for i in chosen]
                scored = _batch_scores(model, batch, targets, device)
                for i, score in zip(chosen, scored, strict=True):
                    scores[i] = score
                bar.update(len(chosen))
    finally:
        model.train(was_training)
    return scores


def _batch_scores(
    model: nn.Module, inputs: list[list[int]], targets: list[list[int]], device: torch.device
) -> list[float]:
    """Summed log-probabilities of each row's ``targets``, the last tokens its input predicts."""
    width = max(len(ids) for ids in inputs)
    x = torch.zeros((len(inputs), width), dtype=torch.long)
    for row, ids in enumerate(inputs):
        x[row, : len(ids)] = torch.tensor(ids)
    logits, _ = model(x.to(device))
    # At least float32: a log-softmax over a large vocabulary in bf16 is too coarse.
    logprobs = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)
    scores = []
    for row, (ids, target) in enumerate(zip(inputs, targets, strict=True)):
        span = logprobs[row, len(ids) - len(target) : len(ids)]
        wanted = torch.tensor(target, device=span.device).unsqueeze(-1)
        scores.append(float(span.gather(-1, wanted).sum()))
    return scores


# -- results --------------------------------------------------------------------------------


def _first_max(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


@dataclass(frozen=True)
class ItemResult:
    """One item's log-likelihoods and the choice each metric picks."""

    item: MCItem
    loglikelihoods: tuple[float, ...]

    @property
    def pred(self) -> int:
        return _first_max(self.loglikelihoods)

    @property
    def pred_norm(self) -> int:
        return _first_max([ll / len(c) for ll, c in self._pairs()])

    @property
    def pred_bytes(self) -> int:
        return _first_max([ll / len(c.encode("utf-8")) for ll, c in self._pairs()])

    def _pairs(self) -> list[tuple[float, str]]:
        return list(zip(self.loglikelihoods, self.item.choices, strict=True))

    def as_json(self, index: int) -> dict:
        """This item as one JSON object: a line of the per-item results file."""
        label = self.item.label
        return {
            "index": index,
            "source": self.item.source,
            "label": label,
            "pred": self.pred,
            "pred_norm": self.pred_norm,
            "pred_bytes": self.pred_bytes,
            "acc": float(self.pred == label),
            "acc_norm": float(self.pred_norm == label),
            "acc_bytes": float(self.pred_bytes == label),
            "loglikelihoods": list(self.loglikelihoods),
            "context": self.item.context,
            "choices": list(self.item.choices),
        }


@dataclass(frozen=True)
class TaskResult:
    """A task's per-item results and their means."""

    task: MCTask
    items: tuple[ItemResult, ...]

    def _mean(self, pred: str) -> float:
        right = sum(getattr(r, pred) == r.item.label for r in self.items)
        return right / len(self.items)

    @property
    def acc(self) -> float:
        return self._mean("pred")

    @property
    def acc_norm(self) -> float:
        return self._mean("pred_norm")

    @property
    def acc_bytes(self) -> float:
        return self._mean("pred_bytes")

    def summary(self) -> dict[str, float | int | str]:
        """``{"task", "items", "acc", "acc_norm", "acc_bytes", "chance"}``."""
        return {
            "task": self.task.name,
            "items": len(self.items),
            "acc": self.acc,
            "acc_norm": self.acc_norm,
            "acc_bytes": self.acc_bytes,
            "chance": self.task.chance,
        }

    def jsonl(self) -> str:
        """One JSON line per item (:meth:`ItemResult.as_json`), for a per-item results file."""
        lines = (json.dumps(r.as_json(i), ensure_ascii=False) for i, r in enumerate(self.items))
        return "".join(line + "\n" for line in lines)


def score_task(
    model: nn.Module,
    tokenizer: Tokenizer,
    task: MCTask,
    *,
    batch_size: int = 32,
    progress: bool = True,
) -> TaskResult:
    """Every item of ``task`` scored by ``model``: log-likelihoods, choices, acc and acc_norm."""
    block_size = model.config.block_size
    requests: list[Request] = []
    for item in task.items:
        for number, request in enumerate(item_requests(tokenizer, item), 1):
            if not 1 <= len(request[1]) <= block_size:
                raise TinylmError(
                    f"{item.source}: choice {number} is {len(request[1])} tokens after the "
                    f"context; the model scores 1 to {block_size} (its block_size), so change it"
                )
            requests.append(request)
    scores = loglikelihoods(model, requests, batch_size, progress)
    results = []
    start = 0
    for item in task.items:
        end = start + len(item.choices)
        results.append(ItemResult(item, tuple(scores[start:end])))
        start = end
    return TaskResult(task, tuple(results))
