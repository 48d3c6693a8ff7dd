"""Looking inside: how text becomes tokens (and, with a model, attention and probabilities)."""
