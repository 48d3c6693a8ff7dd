"""Requests a browser page elsewhere, a careless script or a flood might send: each gets a
JSON answer with the right status, never silence or a reset connection."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from tinylm.serve.server import MAX_BODY_BYTES

from .conftest import serving
from .test_api import request


def raw_exchange(server, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes as they are, read until the server closes: what a client would see."""
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head, head
    return int(head.split(b" ")[1]), json.loads(body)


def post(server, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        assert response.headers["Content-Type"] == "application/json"
        return response.status, json.loads(response.read())
    finally:
        conn.close()


# -- bodies and names that used to get no answer ---------------------------------------------


def test_deeply_nested_json_under_the_size_cap_is_a_400(server):
    depth = 30_000  # 60 KB: under the 64 KB cap, far past json's recursion limit
    body = b'{"text": ' + b"[" * depth + b"]" * depth + b"}"
    assert len(body) < MAX_BODY_BYTES
    status, answer = post(server, "/api/next", body, {"Content-Type": "application/json"})
    assert status == 400 and "nests 30,001 arrays or objects deep" in answer["error"]


def test_brackets_inside_strings_are_not_nesting(server):
    text = "[{" * 40 + '"\\'  # brackets, a quote and a backslash inside the string
    body = json.dumps({"run": "alpha", "text": text}).encode()
    status, answer = post(server, "/api/tokenize", body, {"Content-Type": "application/json"})
    assert status == 200 and answer["text"] == text


def test_a_very_long_static_file_name_is_a_404(server):
    status, answer = request(server, "/static/" + "a" * 300 + ".js")
    assert status == 404 and "no such file" in answer["error"]
    status, answer = request(server, "/static/..%2Fserver.py")
    assert status == 404


def test_a_10_mb_body_from_http_client_gets_the_413(server):
    body = b"x" * (10 * 1024 * 1024)
    status, answer = post(server, "/api/next", body, {"Content-Type": "application/json"})
    assert status == 413 and "the limit is 65,536" in answer["error"]
    assert request(server, "/api/runs")[0] == 200


# -- cross-origin requests -------------------------------------------------------------------


def test_a_cross_origin_simple_post_is_refused_before_the_model_runs(server, api, monkeypatch):
    calls = []
    monkeypatch.setattr(api, "next_token", lambda body: calls.append(body) or {})
    body = json.dumps({"run": "alpha", "text": "the"}).encode()
    for kind in ("text/plain", "application/json"):
        headers = {"Origin": "http://evil.example", "Content-Type": kind}
        status, answer = post(server, "/api/next", body, headers)
        assert status == 403 and "'http://evil.example'" in answer["error"]
    status, answer = post(server, "/api/generate", body, {"Origin": "null"})
    assert status == 403
    assert calls == []


def test_a_post_must_declare_its_body_json(server, api, monkeypatch):
    calls = []
    monkeypatch.setattr(api, "next_token", lambda body: calls.append(body) or {})
    body = json.dumps({"run": "alpha", "text": "the"}).encode()
    for kind in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {} if kind is None else {"Content-Type": kind}
        status, answer = post(server, "/api/next", body, headers)
        assert status == 415 and "application/json" in answer["error"], kind
    assert calls == []


def test_the_servers_own_origin_and_no_origin_are_served(server):
    host, port = server.server_address[:2]
    body = json.dumps({"run": "alpha", "text": "the"}).encode()
    own = {"Origin": f"http://{host}:{port}", "Content-Type": "application/json; charset=utf-8"}
    assert post(server, "/api/tokenize", body, own)[0] == 200
    assert post(server, "/api/tokenize", body, {"Content-Type": "application/json"})[0] == 200


def test_a_cross_origin_get_is_refused(server):
    status, answer = request(server, "/api/runs", headers={"Origin": "http://evil.example"})
    assert status == 403


# -- a flood ---------------------------------------------------------------------------------


def test_a_flood_of_generations_gets_streams_or_503s_never_a_reset(api):
    """50 clients at once against 4 slots: each gets a stream or a 503 JSON answer.

    With the standard library's listen backlog of 5, connections beyond it were
    reset (or delayed by SYN retries) before the server could say it was busy.
    """
    clients = 50
    outcomes: list = [None] * clients
    start = threading.Barrier(clients, timeout=30)
    body = json.dumps({"run": "alpha", "text": "the", "max_tokens": 40, "seed": 3}).encode()

    def flood(n: int) -> None:
        try:
            start.wait()
            began = time.monotonic()
            status, answer = post_stream(srv, body)
            outcomes[n] = (status, answer, time.monotonic() - began)
        except Exception as exc:  # what the client saw: a reset, a timeout, ...
            outcomes[n] = (type(exc).__name__, str(exc), None)

    threads = [threading.Thread(target=flood, args=(n,)) for n in range(clients)]
    with serving(api, max_requests=4) as srv:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    statuses = [o[0] for o in outcomes]
    assert set(statuses) <= {200, 503}, [o for o in outcomes if o[0] not in (200, 503)]
    assert statuses.count(200) >= 1
    for status, answer, seconds in outcomes:
        if status == 503:
            assert "busy (4 requests at once)" in answer["error"]
        assert seconds < 30  # no SYN retry stalls


def post_stream(server, body: bytes) -> tuple[int, object]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", "/api/generate", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        if response.status == 200:
            return 200, payload.decode().strip().split("\n\n")[-1]
        return response.status, json.loads(payload)
    finally:
        conn.close()


@pytest.mark.parametrize("length", ["-5", "12abc"])
def test_a_bad_content_length_is_a_400(server, length):
    head = f"POST /api/next HTTP/1.1\r\nHost: {server.url[7:-1]}\r\nContent-Length: {length}\r\n"
    answer = raw_exchange(server, (head + "\r\n").encode())
    status, message = status_and_json(answer)
    assert status == 400 and "Content-Length" in message["error"]
