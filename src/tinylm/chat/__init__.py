"""Chat: conversations as data, and the template that turns them into training ids.

Read in the order data flows:

- ``conversations`` -- ``{"messages": [{"role", "content"}, ...]}`` JSON lines (the
  OpenAI / Hugging Face convention) from files or a Hugging Face dataset, every
  line checked; one error line names ``file:line``.
- ``template``      -- the chat template: the turn tokens a tokenizer gains, a
  conversation rendered into ids and a loss mask (only the assistant's replies
  count), the render for generation, and the rule for conversations longer than
  the context.
- ``builtin``       -- a conversation set built from Python's own help topics, so
  fine-tuning works offline.

Everything here is torch-free (tested); growing a model for the new tokens is
``tinylm.model.grow_vocab``, the masked loss ``tinylm.train.masked_loss``. The
package itself imports nothing; import names from the module that defines them.
"""
