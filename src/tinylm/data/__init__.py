"""Data: from text to the batches a model trains on, one stage per module.

Read in the order data flows:

- ``corpus``   -- text in: the built-in corpus, files, folders, globs, split into
  documents (standard library only, so the tokenizers can use it).
- ``hub``      -- documents from a Hugging Face dataset (the optional ``datasets``).
- ``mc_tasks`` -- multiple-choice items (context, choices, label) from JSONL files,
  the hub or the built-in task, for benchmarks (no torch).
- ``prepare``  -- documents encoded into a prepared dataset: train/val token files
  and ``meta.json`` (``tinylm prepare``; numpy, no torch).
- ``prepared`` -- that dataset's layout, opened read-only as memmaps and checked
  against the tokenizer.
- ``batches``  -- token arrays to ``(x, y)`` tensors: one sampler for training,
  evaluation and notebooks (``get_batch``), and the one device copy (torch).

The package itself imports nothing, so ``tinylm.data.corpus`` stays torch-free;
import names from the module that defines them.
"""
