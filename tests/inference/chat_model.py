"""A tiny chat model trained for the tests: it answers a few known messages with known replies.

A char tokenizer gains the chat tokens, a two-layer GPT learns three short
conversations (the loss on the replies only, as chat fine-tuning counts it) until
greedy decoding reproduces each reply, and the checkpoint is saved with its
tokenizer and ``chat_template.json``, as a chat fine-tuning run would save it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tinylm.chat.conversations import Conversation, Message
from tinylm.chat.template import ChatTemplate, add_chat_tokens, template_record
from tinylm.checkpoint import save_checkpoint
from tinylm.model import GPT, ModelConfig
from tinylm.tokenizers.char import CharTokenizer

#: (system, user, the reply the model learns)
TURNS = [
    (None, "hi", "hello there!"),
    (None, "2+2?", "four."),
    ("be brief.", "hi", "hey."),
    (None, "Über café?", "ja, café ✓"),
]
ALPHABET = "".join(sorted({ch for turn in TURNS for part in turn if part for ch in part}))
BLOCK_SIZE = 48


def conversations() -> list[Conversation]:
    out = []
    for system, user, reply in TURNS:
        head = [] if system is None else [Message("system", system)]
        out.append(Conversation((*head, Message("user", user), Message("assistant", reply))))
    return out


def train_chat_model(steps: int = 120, seed: int = 0) -> tuple[GPT, CharTokenizer]:
    """The model and tokenizer, trained on :data:`TURNS` with the loss on replies only."""
    torch.manual_seed(seed)
    tokenizer = add_chat_tokens(CharTokenizer.train(ALPHABET + "abcdefghijklmnopqrstuvwxyz "))
    template = ChatTemplate(tokenizer)
    rows = [template.render(c) for c in conversations()]
    width = max(len(r.ids) for r in rows) - 1
    idx = torch.zeros(len(rows), width, dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for b, row in enumerate(rows):
        n = len(row.ids) - 1
        idx[b, :n] = torch.tensor(row.ids[:-1])
        targets[b, :n] = torch.tensor(
            [t if m else -100 for t, m in zip(row.ids[1:], row.mask[1:], strict=True)]
        )
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=BLOCK_SIZE, n_layer=2, n_embd=48, n_head=4
    )
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(steps):
        _, loss = model(idx, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


def save_chat_model(folder: Path, model: GPT, tokenizer: CharTokenizer) -> Path:
    """A checkpoint folder as chat fine-tuning leaves it: weights, tokenizer, chat template."""
    return save_checkpoint(
        folder, model, None, 0, tokenizer=tokenizer, chat_template=template_record()
    )
