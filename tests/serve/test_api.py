"""The inspector's JSON API over HTTP, against torch's own softmax and the model's weights.

A server runs in this process on an ephemeral port of 127.0.0.1 (see conftest);
each test talks to it as the page does, with urllib.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request

import pytest
import torch

from tinylm.serve.api import Api, Limits

from .conftest import TEXT


def request(server, path: str, body=None, *, raw: bytes | None = None, headers=None):
    """(status, answer): the JSON answer, or the list of events of a stream."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(server.url.rstrip("/") + path, data=data, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            status, kind, payload = (
                response.status,
                response.headers["Content-Type"],
                response.read(),
            )
    except urllib.error.HTTPError as exc:
        status, kind, payload = exc.code, exc.headers["Content-Type"], exc.read()
    if kind.startswith("text/event-stream"):
        blocks = payload.decode().strip().split("\n\n")
        return status, [json.loads(b.removeprefix("data: ")) for b in blocks]
    assert kind == "application/json", kind
    return status, json.loads(payload)


def model_input(api: Api, run: str, text: str) -> torch.Tensor:
    """BOS then the text, as ``tinylm sample`` starts a document."""
    tok = api.runs[run].tokenizer
    return torch.tensor([[tok.bos_id, *tok.encode(text)]])


# -- GET -------------------------------------------------------------------------------------


def test_runs_lists_each_run_with_config_and_parameter_counts(server, api):
    status, info = request(server, "/api/runs")
    assert status == 200
    by_name = {run["name"]: run for run in info["runs"]}
    assert list(by_name) == ["alpha", "beta"]
    for name, run in by_name.items():
        model = api.runs[name].loaded.model
        assert run["params"]["total"] == sum(p.numel() for p in model.parameters())
        assert run["model"]["n_layer"] == {"alpha": 2, "beta": 1}[name]
        assert run["step"] == {"alpha": 60, "beta": 40}[name]
        assert run["tokenizer"]["vocab_size"] == len(set(TEXT)) + 1
    assert by_name["beta"]["train"] == {"lr": 2e-3}
    assert [t["name"] for t in info["tokenizers"]] == ["char"]
    assert info["limits"]["max_new_tokens"] == 40


def test_metrics_are_the_runs_loss_curves(server):
    status, curves = request(server, "/api/metrics?run=alpha")
    assert status == 200
    assert curves["train"] == [[0, 4.0], [10, 3.1], [20, 2.6], [30, 2.3], [40, 2.1], [50, 2.0]]
    assert curves["val"] == [[10, pytest.approx(3.2)], [30, pytest.approx(2.4)], [50, 2.1]]
    assert curves["val_bpb"] == []  # recorded before bits per byte: no curve, no error


def test_metrics_give_bits_per_byte_when_the_run_recorded_them(tmp_path):
    from tinylm.serve.served import load_runs

    from .conftest import make_run

    run = make_run(tmp_path / "new", n_layer=1, seed=0, losses=[3.0, 2.5])
    with (run / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write('\n{"step": 30, "val_loss": 2.4, "val_ppl": 11.0, "val_bpb": 3.25}\n')
    curves = Api(load_runs([run])).metrics({})
    assert curves["val_bpb"] == [[30, 3.25]]
    assert curves["val"][-1] == [30, 2.4]


def test_metrics_of_an_unknown_or_unnamed_run_is_an_error(server):
    status, answer = request(server, "/api/metrics?run=gamma")
    assert status == 404 and "unknown run 'gamma'" in answer["error"] and "alpha" in answer["error"]
    status, answer = request(server, "/api/metrics")
    assert status == 400 and "run is missing" in answer["error"]


def test_long_curves_are_thinned_keeping_the_last_point(runs_root):
    from tinylm.serve.served import load_runs

    api = Api(load_runs([runs_root / "alpha"]), limits=Limits(max_curve_points=4))
    curve = api.metrics({})["train"]  # one run: it need not be named
    assert curve == [[0, 4.0], [20, 2.6], [40, 2.1], [50, 2.0]]


# -- tokens ----------------------------------------------------------------------------------


def test_tokenize_shows_the_runs_tokens_and_the_chosen_comparison(server, api):
    text = "the lazy fox"
    status, answer = request(
        server, "/api/tokenize", {"run": "alpha", "text": text, "compare": ["char"]}
    )
    assert status == 200
    run_row, char_row = answer["rows"]
    tok = api.runs["alpha"].tokenizer
    assert [t["id"] for t in run_row["tokens"]] == tok.encode(text)
    assert "".join(t["text"] for t in run_row["tokens"]) == text
    assert [t["id"] for t in char_row["tokens"]] == api.tokenizers["char"].encode(text)
    assert answer["chars"] == len(text)


def test_tokenize_against_tiktoken_with_the_bytes_of_partial_characters(shared_data, runs_root):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    from tinylm.serve.served import load_runs
    from tinylm.tokenizers.formats import load_tokenizer

    path = shared_data("vocab/gpt2.tiktoken")
    gpt2 = load_tokenizer(path)
    reference = tiktoken.Encoding(  # built offline from the same file, never from tinylm
        name="gpt2_ref",
        pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=load_tiktoken_bpe(str(path)),
        special_tokens={},
    )
    api = Api(load_runs([runs_root / "alpha"]), {"gpt2": gpt2})
    text = "Hello world, unhappy strawberry \U0001f353!"
    run_row, gpt2_row = api.tokenize({"text": text, "compare": ["gpt2"]})["rows"]
    assert "cannot encode" in run_row["error"] and run_row["tokens"] == []  # no emoji in TEXT
    assert [t["id"] for t in gpt2_row["tokens"]] == reference.encode(text)
    joined = bytes.fromhex("".join(t["bytes"].replace(" ", "") for t in gpt2_row["tokens"]))
    assert joined.decode("utf-8") == text
    assert any("\\x" in t["text"] for t in gpt2_row["tokens"])  # a partial character


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"run": "alpha", "text": ""}, 400, "text is empty"),
        ({"run": "alpha", "text": "a" * 201}, 400, "201 characters; the limit is 200"),
        ({"run": "alpha", "text": 5}, 400, "text must be a string, not a number"),
        ({"run": "alpha", "text": None}, 400, "text must be a string, not null"),
        ({"run": "gamma", "text": "the"}, 404, "unknown run 'gamma'"),
        ({"run": ["alpha"], "text": "the"}, 400, "run must be a string, not a list"),
        ({"run": "alpha", "text": "the", "compare": ["gpt9"]}, 404, "unknown compare 'gpt9'"),
        ({"run": "alpha", "text": "the", "compare": "char"}, 400, "compare must be a list"),
    ],
)
def test_tokenize_bad_input_is_a_json_error(server, body, status, message):
    got, answer = request(server, "/api/tokenize", body)
    assert got == status and message in answer["error"], answer


# -- next token --------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.4, 2.5])
def test_next_token_probabilities_equal_torch_softmax(server, api, temperature):
    text = "the quick"
    status, answer = request(
        server, "/api/next", {"run": "alpha", "text": text, "temperature": temperature, "k": 8}
    )
    assert status == 200
    with torch.no_grad():
        logits = api.runs["alpha"].loaded.model(model_input(api, "alpha", text))[0][0, -1].double()
    expected = torch.softmax(logits / temperature, dim=-1)
    top = torch.topk(expected, 8)
    assert [t["id"] for t in answer["top"]] == top.indices.tolist()
    got = torch.tensor([t["prob"] for t in answer["top"]], dtype=torch.float64)
    torch.testing.assert_close(got, top.values, atol=1e-6, rtol=1e-5)
    t1 = torch.softmax(logits, dim=-1)[top.indices]
    torch.testing.assert_close(
        torch.tensor([t["prob_t1"] for t in answer["top"]], dtype=torch.float64),
        t1,
        atol=1e-6,
        rtol=1e-5,
    )
    assert answer["rest"] == pytest.approx(1 - float(top.values.sum()), abs=1e-6)
    assert len(answer["context"]) == len(text) + 1  # BOS first


def test_temperature_zero_is_greedy(server, api):
    status, answer = request(server, "/api/next", {"run": "beta", "text": "the", "temperature": 0})
    assert status == 200
    with torch.no_grad():
        logits = api.runs["beta"].loaded.model(model_input(api, "beta", "the"))[0][0, -1]
    assert answer["top"][0]["id"] == int(logits.argmax()) and answer["top"][0]["prob"] == 1.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": "the", "temperature": -1}, "temperature must be between 0.0 and 5.0"),
        ({"text": "the", "temperature": "hot"}, "temperature must be a number, not a string"),
        ({"text": "the", "temperature": True}, "temperature must be a number, not a boolean"),
        ({"text": "the", "k": 0}, "k must be between 1 and 100"),
        ({"text": "the", "k": 2.5}, "k must be a whole number"),
        ({"text": ""}, "text is empty"),
        ({"text": "the " * 20}, "block_size of 48"),
    ],
)
def test_next_token_bad_input(server, body, message):
    status, answer = request(server, "/api/next", {"run": "alpha", **body})
    assert status == 400 and message in answer["error"], answer


# -- attention ----------------------------------------------------------------------------


def test_attention_equals_the_models_attention_maps(server, api):
    text = "fox jumps"
    status, answer = request(server, "/api/attention", {"run": "alpha", "text": text})
    assert status == 200
    model = api.runs["alpha"].loaded.model
    with torch.no_grad():
        maps = model.attention_maps(model_input(api, "alpha", text))
    assert (answer["n_layer"], answer["n_head"]) == (2, 2)
    assert [t["id"] for t in answer["tokens"]] == model_input(api, "alpha", text)[0].tolist()
    for layer, weights in enumerate(maps):
        for head in range(2):
            for i, row in enumerate(answer["weights"][layer][head]):
                assert len(row) == i + 1  # the causal mask's zeros are left out
                expected = weights[0, head, i, : i + 1].double()
                torch.testing.assert_close(
                    torch.tensor(row, dtype=torch.float64), expected, atol=1e-6, rtol=0
                )
                assert float(weights[0, head, i, i + 1 :].abs().sum()) == 0


def test_attention_of_text_the_tokenizer_cannot_encode_is_an_error(server):
    status, answer = request(server, "/api/attention", {"run": "alpha", "text": "ZZ"})
    assert status == 400 and "Z" in answer["error"]


def test_attention_over_the_limit_is_refused(runs_root):
    from tinylm.serve.request import ApiError
    from tinylm.serve.served import load_runs

    api = Api(load_runs([runs_root / "alpha"]), limits=Limits(max_attention_values=100))
    with pytest.raises(ApiError, match=r"11 tokens over 2 layers x 2 heads is 264 weights"):
        api.attention({"text": "the quick "})


# -- generation ----------------------------------------------------------------------------


def test_generation_streams_what_generate_samples_with_each_tokens_probability(server, api):
    body = {
        "run": "alpha",
        "text": "the",
        "max_tokens": 12,
        "temperature": 0.9,
        "top_k": 10,
        "seed": 7,
    }
    status, events = request(server, "/api/generate", body)
    assert status == 200
    tokens, done = events[:-1], events[-1]
    model = api.runs["alpha"].loaded.model
    prompt = model_input(api, "alpha", "the")[0].tolist()
    expected = list(model.generate(prompt, 12, temperature=0.9, top_k=10, seed=7))
    bos = api.runs["alpha"].tokenizer.bos_id
    shown = expected[: expected.index(bos)] if bos in expected[1:] else expected
    shown = [t for i, t in enumerate(shown) if not (i == 0 and t == bos)]
    assert [e["id"] for e in tokens] == shown
    assert done["type"] == "done" and done["tokens"] == len(shown)
    context = list(prompt)
    with torch.no_grad():
        for event, token in zip(tokens, shown, strict=False):
            logits = model(torch.tensor([context]))[0][0, -1]
            assert event["prob"] == pytest.approx(
                float(torch.softmax(logits.double(), -1)[token]), abs=1e-6
            )
            context.append(token)


def test_generation_is_reproducible_with_a_seed(server):
    body = {"run": "beta", "text": "the", "max_tokens": 10, "seed": 3}
    first, second = (request(server, "/api/generate", body)[1] for _ in range(2))
    for events in (first, second):
        del events[-1]["seconds"]
    assert first == second and len(first) > 1


def test_generation_stops_at_the_time_limit(runs_root):
    from tinylm.serve.served import load_runs

    api = Api(load_runs([runs_root / "beta"]), limits=Limits(generate_seconds=0.0))
    events = list(api.generate(api.start_generation({"text": "the", "max_tokens": 5})))
    assert events == [{**events[-1], "type": "done", "reason": "time", "tokens": 0}]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"max_tokens": 0}, 400, "max_tokens must be between 1 and 40"),
        ({"max_tokens": 41}, 400, "max_tokens must be between 1 and 40"),
        ({"max_tokens": "10"}, 400, "max_tokens must be a whole number, not a string"),
        ({"top_p": 0}, 400, "top_p must be between 0.01 and 1.0"),
        ({"top_k": -3}, 400, "top_k must be between 1"),
        ({"seed": -1}, 400, "seed must be between 0"),
        ({"temperature": float("nan")}, 400, "not valid JSON"),
        ({"run": "gamma"}, 404, "unknown run"),
        ({"text": "ZZ"}, 400, "Z"),
    ],
)
def test_generation_bad_input_is_a_json_error_not_a_stream(server, body, status, message):
    raw = json.dumps({"run": "alpha", "text": "the", **body}).replace("NaN", "nan").encode()
    got, answer = request(server, "/api/generate", raw=raw)
    assert got == status and message in answer["error"], answer


# -- the server itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "the request body is empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, not a list"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(server, raw, message):
    status, answer = request(server, "/api/next", raw=raw)
    assert status == 400 and message in answer["error"]


def test_unknown_paths_oversized_bodies_and_foreign_hosts_are_refused(server):
    assert request(server, "/api/nothing", {})[0] == 404
    assert request(server, "/nothing")[0] == 404
    assert request(server, "/static/..%2Fapi.py")[0] == 404
    status, answer = request(server, "/api/next", raw=b"{" + b" " * 70_000 + b"}")
    assert status == 413 and "limit" in answer["error"]
    status, answer = request(server, "/api/runs", headers={"Host": "evil.example:80"})
    assert status == 403 and "evil.example" in answer["error"]


def test_a_malformed_request_line_gets_json_and_the_server_keeps_serving(server):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.putrequest("BREW", "/pot")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 501 and "error" in json.loads(response.read())
    assert request(server, "/api/runs")[0] == 200


def test_a_bug_in_a_handler_is_a_500_and_the_server_keeps_serving(server, api, monkeypatch, capsys):
    def broken(body):
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "tokenize", broken)
    status, answer = request(server, "/api/tokenize", {"text": "the"})
    assert status == 500 and "RuntimeError: boom" in answer["error"]
    assert "RuntimeError" in capsys.readouterr().err  # the traceback is on the server's log
    monkeypatch.undo()
    assert request(server, "/api/tokenize", {"run": "alpha", "text": "the"})[0] == 200


def test_concurrent_requests_on_one_model_agree_with_one_at_a_time(server):
    bodies = [{"run": "alpha", "text": "the quick", "temperature": 0.5 + i / 10} for i in range(6)]
    alone = [request(server, "/api/next", b) for b in bodies]
    results: list = [None] * (len(bodies) + 2)

    def ask(i):
        if i < len(bodies):
            results[i] = request(server, "/api/next", bodies[i])
        elif i == len(bodies):
            results[i] = request(server, "/api/generate", {"run": "alpha", "text": "t", "seed": 1})
        else:
            results[i] = request(server, "/api/next", {"run": "alpha", "text": 3})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results[: len(bodies)] == alone
    assert results[-2][0] == 200 and results[-2][1][-1]["type"] == "done"
    assert results[-1][0] == 400


def test_the_page_and_its_files_are_served_and_fetch_nothing_from_elsewhere(server):
    from tinylm.serve.server import STATIC_DIR

    with urllib.request.urlopen(server.url, timeout=10) as response:
        page = response.read().decode()
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "<title>tinylm inspector</title>" in page
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        # The one URL in the files is SVG's namespace name, which is never fetched.
        assert text.replace("http://www.w3.org/2000/svg", "").count("http") == 0, path.name
        with urllib.request.urlopen(server.url + "static/" + path.name, timeout=10) as response:
            assert response.read().decode() == text


def test_a_client_that_leaves_mid_stream_stops_its_generation_not_the_server(server):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    body = json.dumps({"run": "alpha", "text": "the", "max_tokens": 40, "seed": 2})
    conn.request("POST", "/api/generate", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b"data: ")  # the first token arrived
    conn.close()  # the page's Stop button: the connection goes away mid-stream
    status, events = request(server, "/api/generate", {"run": "alpha", "text": "the", "seed": 2})
    assert status == 200 and events[-1]["type"] == "done"
    assert request(server, "/api/runs")[0] == 200


def test_the_lens_last_layer_is_the_models_own_prediction_at_every_position(server, api):
    text = "the fox"
    status, answer = request(server, "/api/lens", {"run": "alpha", "text": text, "k": 2})
    assert status == 200
    assert answer["stages"] == ["embeddings", "layer 0", "layer 1"]
    model = api.runs["alpha"].loaded.model
    with torch.no_grad():
        probs = torch.softmax(model(model_input(api, "alpha", text))[0][0].double(), dim=-1)
    top = torch.topk(probs, 2, dim=-1)
    last = answer["top"][-1]
    assert len(last) == len(text) + 1
    assert [[g["id"] for g in guesses] for guesses in last] == top.indices.tolist()
    got = torch.tensor([[g["prob"] for g in guesses] for guesses in last], dtype=torch.float64)
    torch.testing.assert_close(got, top.values, atol=1e-5, rtol=1e-5)
    status, answer = request(server, "/api/lens", {"run": "alpha", "text": text, "k": 11})
    assert status == 400 and "k must be between 1 and 10" in answer["error"]


# -- generation speed and context; runs' own prompts and tokenizers ------------------------


def test_each_generated_token_costs_one_forward_its_colour_included(api):
    """The probability shown is read from the engine step that sampled the token; a second
    forward per token (over the whole window, without the KV cache) made the server
    many times slower than generating alone."""
    import dataclasses

    engine = api.runs["alpha"].engine
    sampled: list[int] = []  # every token the engine handed out, end-of-document ones too

    def counted(tokens):
        try:
            for token in tokens:
                sampled.append(token)
                yield token
        finally:
            tokens.close()

    steps: list[int] = []
    step = engine.next_token_logits

    def counted_step(*args, **kwargs):
        steps.append(1)
        return step(*args, **kwargs)

    engine.next_token_logits = counted_step
    try:
        request = api.start_generation(
            {"run": "alpha", "text": "the", "max_tokens": 20, "seed": 10}
        )
        request = dataclasses.replace(request, tokens=counted(request.tokens))
        events = list(api.generate(request))
    finally:
        del engine.next_token_logits
    assert len(events) - 1 >= 10  # tokens shown
    assert len(steps) == len(sampled)


def test_a_prompt_longer_than_the_context_continues_from_its_last_block_size_tokens(server, api):
    text = "the quick brown fox jumps over the lazy dog, 0123456789! the with"
    tok = api.runs["alpha"].tokenizer
    ids = [tok.bos_id, *tok.encode(text)]
    block_size = api.runs["alpha"].loaded.config.block_size
    assert len(ids) > block_size
    body = {"run": "alpha", "text": text, "max_tokens": 15, "temperature": 1.0, "seed": 4}
    status, events = request(server, "/api/generate", body)
    assert status == 200 and events[-1]["type"] == "done"
    model = api.runs["alpha"].loaded.model
    expected = list(model.generate(ids[-block_size:], 15, temperature=1.0, seed=4))
    bos = tok.bos_id
    if expected and expected[0] == bos:
        expected = expected[1:]
    expected = expected[: expected.index(bos)] if bos in expected else expected
    assert [e["id"] for e in events[:-1]] == expected and expected


def test_the_runs_own_tokenizer_is_never_a_second_row(runs_root):
    from tinylm.serve.served import load_runs

    runs = load_runs([runs_root])
    compare = {f"{name} (run)": run.tokenizer for name, run in runs.items()}
    api = Api(runs, compare)
    rows = api.tokenize({"run": "alpha", "text": "the", "compare": list(compare)})["rows"]
    assert [row["name"] for row in rows] == ["alpha (run)", "beta (run)"]


def test_the_default_prompt_is_the_start_of_the_runs_validation_text(tmp_path):
    from tinylm.data.prepare import prepare
    from tinylm.serve.served import DEFAULT_PROMPT_CHARS, load_runs
    from tinylm.tokenizers.char import CharTokenizer

    from .conftest import make_run

    run = make_run(tmp_path / "names", n_layer=1, seed=2, losses=[3.0, 2.0])
    tokenizer = CharTokenizer.train(TEXT)
    lines = [f"line {n} of the lazy dog, the quick brown fox jumps over it" for n in range(60)]
    prepare("\n".join(lines), tokenizer, run / "data/0123", separator="line", progress=False)
    served = load_runs([run])["names"]
    prompt = served.default_prompt
    # Whole words from the start of a validation line (the split may begin mid-line).
    assert 10 <= len(prompt) <= DEFAULT_PROMPT_CHARS
    assert any(line.startswith(prompt + " ") for line in lines), prompt
    assert Api({"names": served}).describe()["runs"][0]["default_prompt"] == served.default_prompt
    # The data made by another tokenizer, or gone: no prompt rather than a wrong one.
    other = CharTokenizer.train(TEXT + "XYZ")
    prepare("\n".join(lines), other, run / "data/other", separator="line", progress=False)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "prepared": "data/other"}))
    assert load_runs([run])["names"].default_prompt == ""
    (run / "run.json").write_text(json.dumps({**info, "prepared": "data/gone"}))
    assert load_runs([run])["names"].default_prompt == ""


def test_each_run_says_what_its_loss_is_per(api):
    runs = api.describe()["runs"]
    assert {run["tokenizer"]["loss_unit"] for run in runs} == {"character"}
    assert runs[0]["tokenizer"]["fingerprint"] == api.runs["alpha"].tokenizer.fingerprint()
