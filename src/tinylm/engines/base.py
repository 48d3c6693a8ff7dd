"""What an engine is: the one interface ``tinylm.run.start`` drives for every engine.

An engine trains a model in a run folder. The run layer does what every run
needs (layering the settings, the folder's rules and lock, preparing the data,
reading ``run.json``) and asks the engine only what differs between engines:

* its **defaults**: the data, preset and document separator of a run that names none;
* **checking the settings** before any data is prepared, so a typo fails in a
  moment: :meth:`Engine.train_config` (the engine's defaults under the caller's
  settings, refusing what it cannot do) and :meth:`Engine.check_model`;
* **starting** a run, new or fine-tuned from a checkpoint (:meth:`Engine.start`),
  and **resuming** one from its latest checkpoint (:meth:`Engine.resume`).

Each hands back an :class:`EngineTrainer`: what the caller fits. It **holds the
run folder's lock** (``run_lock``) from set-up until ``fit`` ends, so a second
training into the same folder is refused while this one writes.

This module imports nothing heavy: the CLI lists the engines without torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from tinylm.data.prepared import PreparedData
    from tinylm.tokenizers.base import Tokenizer
    from tinylm.train.config import TrainConfig
    from tinylm.train.distributed import DistInfo


class FolderLock(Protocol):
    """A run folder's lock (``tinylm.run.lock.RunLock``), as a trainer holds it."""

    def release(self) -> None: ...


class EngineTrainer(Protocol):
    """A run set up by an engine, ready to ``fit()``: what ``start_run`` returns.

    ``config.out_dir`` is the run folder; ``step`` the steps done, ``saved_step``
    and ``last_checkpoint`` the latest save (for an interrupted run's report).
    ``fit`` releases ``run_lock`` when it ends, however it ends. ``chat_template``
    is the template record a chat fine-tune's checkpoints store, ``None`` otherwise.
    """

    config: TrainConfig
    tokenizer: Any
    chat_template: dict[str, Any] | None
    dist: DistInfo
    step: int
    saved_step: int
    last_checkpoint: Path | None
    run_lock: FolderLock | None

    def fit(self) -> dict[str, Any]: ...

    def sample(
        self, prompt: str | None = None, max_tokens: int | None = None, **kw: Any
    ) -> str: ...


class Engine(ABC):
    """One way to train: its defaults, its checks, and how it starts and resumes a run."""

    #: The name ``engine=`` takes (the CLI too) and ``run.json`` records.
    name: ClassVar[str]
    #: The model preset of a run that names none (below a config file's ``preset``).
    default_preset: ClassVar[str]
    #: The data of a run that names none (a ``tinylm.data.corpus`` name).
    default_data: ClassVar[str]
    #: How text files are cut into documents when the caller does not say.
    default_separator: ClassVar[str]
    #: Whether it fine-tunes on conversations (chat data: ``ConversationData``, masked loss).
    conversations: ClassVar[bool] = False

    @abstractmethod
    def train_config(self, settings: dict[str, Any]) -> TrainConfig:
        """The run's ``TrainConfig``: this engine's defaults, then ``settings``; or refuse."""

    @abstractmethod
    def check_model(
        self,
        preset: str,
        model_settings: dict[str, Any],
        config: TrainConfig,
        dist: DistInfo,
    ) -> None:
        """Refuse, before any data is prepared, a model this engine cannot build or fit."""

    @abstractmethod
    def start(
        self,
        data: PreparedData,
        tokenizer: Tokenizer,
        config: TrainConfig,
        *,
        preset: str,
        model_settings: dict[str, Any],
        base: dict[str, Any] | None,
        run_info: dict[str, Any],
        dist: DistInfo,
    ) -> EngineTrainer:
        """A new run on prepared ``data``; ``base`` (``path``, ``config``) starts from weights.

        An engine with ``conversations`` also takes a
        :class:`~tinylm.data.conversation_batches.ConversationData` (a chat fine-tune,
        whose ``tokenizer`` may have more ids than the base model: the model grows).

        ``run_info`` is what ``run.json`` records beside the model and train settings.
        """

    @abstractmethod
    def resume(
        self,
        model: dict[str, Any],
        latest: Path,
        data: PreparedData,
        tokenizer: Tokenizer,
        config: TrainConfig,
        *,
        run_info: dict[str, Any],
        dist: DistInfo,
    ) -> EngineTrainer:
        """The run whose model is ``model`` (``run.json``'s), continued from ``latest``.

        The trainer comes back at the checkpoint's step, with its weights and
        optimiser state: the rest of the run is what it would have been.
        """
