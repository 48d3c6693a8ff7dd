"""The scratch ladder: a GPT and its tokenizer in plain Python, standard library only.

Each module here is the complete algorithm of one part of tinylm, readable top to
bottom; the rest of tinylm computes the same things faster, and the tests prove
each rung equal to the one above it:

* ``value.py``: ``Value``, a scalar with automatic differentiation (the six
  primitives and the chain rule), equal to ``torch.autograd``;
* ``model.py``: the microgpt model on ``Value`` scalars, equal to
  ``tinylm.model.GPT`` with the ``microgpt`` preset (logits, loss, gradients);
* ``train.py``: Adam, the learning-rate schedule, the training loop and
  sampling, equal to ``tinylm.train.optim.AdamW``;
* ``bpe.py``: byte-pair encoding (train, encode, decode), equal to
  ``tinylm.tokenizers.bpe_train`` and ``BPETokenizer``.

Nothing here imports anything but the standard library: no torch, no numpy, no
other part of tinylm. Training with ``engine="scratch"`` runs it.
"""

from tinylm.scratch.bpe import BPE
from tinylm.scratch.model import Config, MicroGPT
from tinylm.scratch.train import Adam, sample, train
from tinylm.scratch.value import Value

__all__ = ["BPE", "Adam", "Config", "MicroGPT", "Value", "sample", "train"]
