"""A generation through the inspector server against ``GPT.generate`` in the process.

Run ``python bench/bench_serve.py`` (about a minute on 2 cores). A random model (6
layers, 384 wide, a context of 256, a char tokenizer) is saved as a run and served on
127.0.0.1; each round times ``GPT.generate`` for ``--tokens`` tokens in this process,
then the same request to ``POST /api/generate`` read to its end (same prompt, seed
and sampling), alternating. Printed: each pair's seconds and the ratio server /
in-process; near 1 means the server adds nothing but HTTP. ``--threads N`` sets
torch's threads for both sides (default: what ``tinylm serve`` picks).
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from pathlib import Path

import torch

from tinylm.checkpoint import CheckpointManager
from tinylm.cli.serve_cmds import default_threads
from tinylm.model import GPT, ModelConfig
from tinylm.serve.api import Api
from tinylm.serve.served import load_runs
from tinylm.serve.server import InspectorServer
from tinylm.tokenizers.char import CharTokenizer

PROMPT = "ROMEO: what light through yonder window breaks"
TEXT = PROMPT + " abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads or default_threads())
    tokenizer = CharTokenizer.train(TEXT)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size, block_size=256, n_layer=6, n_head=6, n_embd=384
    )
    folder = Path(tempfile.mkdtemp()) / "run"
    CheckpointManager(folder).save(10, GPT(config), None, tokenizer=tokenizer)
    api = Api(load_runs([folder]))
    server = InspectorServer(api, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    model = api.runs["run"].loaded.model
    ids = [tokenizer.bos_id, *tokenizer.encode(PROMPT)]
    body = json.dumps({"text": PROMPT, "max_tokens": args.tokens, "temperature": 0.8, "seed": 1})

    def in_process() -> float:
        began = time.perf_counter()
        for _ in model.generate(ids, args.tokens, temperature=0.8, seed=1):
            pass
        return time.perf_counter() - began

    def served() -> float:
        began = time.perf_counter()
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=600)
        conn.request("POST", "/api/generate", body, {"Content-Type": "application/json"})
        conn.getresponse().read()
        conn.close()
        return time.perf_counter() - began

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.tokens} tokens")
    in_process(), served()  # warm up
    for _ in range(args.rounds):
        alone, through_server = in_process(), served()
        print(
            f"in-process {alone:.2f} s  server {through_server:.2f} s  "
            f"ratio {through_server / alone:.2f}"
        )
    server.shutdown()


if __name__ == "__main__":
    main()
