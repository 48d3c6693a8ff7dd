"""Checkpoints: a directory of safetensors and JSON, written atomically, no pickle.

A checkpoint directory holds (the names live in :mod:`tinylm.run_layout`)::

    model.safetensors      the weights; tied tensors stored once, aliases in its metadata
    optimizer.safetensors  every tensor of ``optimizer.state_dict()``
    optimizer.json         the rest of it (hyperparameters, step counts, structure)
    config.json            {"model": model config, "train": train config}
    tokenizer.json         the tokenizer, so sampling needs nothing but the directory
    rng.safetensors        torch CPU/CUDA, numpy and python RNG states, named generators
    state.json             format, version, step, metrics, and the trainer's ``extra``

Nothing is pickled, so loading a checkpoint someone sent you cannot run code.

One module per job, each readable on its own:

* ``tensor_files``: safetensors files for state dicts with tied tensors;
* ``optimizer_state``: an optimizer's state dict as JSON plus tensors;
* ``rng``: every RNG state, captured and restored for an exact resume;
* ``meta``: state.json and config.json, read as the typed :class:`CheckpointMeta`;
* ``save_load``: saving a folder atomically, resolving a path, loading it back;
* ``manager``: a run's checkpoints, the last few kept and the best published.
"""

from tinylm.checkpoint.manager import CheckpointManager
from tinylm.checkpoint.meta import FORMAT_NAME, FORMAT_VERSION, CheckpointMeta
from tinylm.checkpoint.save_load import (
    check_fits,
    load_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint,
    save_checkpoint,
    stored_tensors,
)
from tinylm.run_layout import (
    CONFIG_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    OPTIMIZER_JSON,
    RNG_FILE,
    STATE_FILE,
    TOKENIZER_FILE,
)

__all__ = [
    "CONFIG_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MODEL_FILE",
    "OPTIMIZER_FILE",
    "OPTIMIZER_JSON",
    "RNG_FILE",
    "STATE_FILE",
    "TOKENIZER_FILE",
    "CheckpointManager",
    "CheckpointMeta",
    "check_fits",
    "load_checkpoint",
    "read_checkpoint_meta",
    "resolve_checkpoint",
    "save_checkpoint",
    "stored_tensors",
]
