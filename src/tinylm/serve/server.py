"""HTTP for the inspector: the standard library's threading server, JSON in and out.

The page needs a handful of routes, JSON and one stream, which ``http.server``
does without a dependency (FastAPI and uvicorn would bring a dozen)::

    GET  /                       the page (static/index.html); /static/NAME its files
    GET  /api/runs               Api.describe: runs, configs, parameters, tokenizers, limits
    GET  /api/metrics?run=NAME   Api.metrics: loss curves
    POST /api/tokenize           Api.tokenize      (JSON body, JSON answer)
    POST /api/next               Api.next_token
    POST /api/attention          Api.attention
    POST /api/lens               Api.lens: the logit lens
    POST /api/generate           Api.generate: server-sent events, one per token
    POST /api/chat               Api.chat: a chat reply, server-sent events as generate's

Every answer is JSON, errors too (``{"error": "..."}`` with a 4xx/5xx status),
so the page can show the message. A request runs on its own thread; whatever
it raises is answered (500 for a bug, with the traceback on the server's
stderr) and never reaches the server loop, so one bad request cannot stop the
server. Bodies are capped, sockets time out, and at most ``max_requests`` are
answered at once (503 beyond that).

Bound to a loopback address (the default), the server also refuses requests
whose ``Host`` header names another host: a web page elsewhere cannot reach it
through DNS rebinding. Any page the user visits may still send a request to
127.0.0.1 (a "simple" cross-origin POST needs no permission), so a request whose
``Origin`` is not this server's own is refused (403), and a POST must say its body
is ``application/json`` (415), which no cross-origin page can send without the
server's consent.

A refusal is sent only after the request's body has been read (up to
``MAX_DRAIN_BYTES``): a client still sending when the server closes the
connection would get a reset instead of the answer.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tinylm.serve.api import Api
from tinylm.serve.request import ApiError, parse_body

STATIC_DIR = Path(__file__).with_name("static")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Nothing but this server: no script, style, font or connection from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)
MAX_BODY_BYTES = 64 * 1024
#: How much of a body over the limit is read and dropped so the client gets the 413;
#: a larger one is cut off (the client may then see a reset instead).
MAX_DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 10.0
SOCKET_TIMEOUT_S = 30
#: Connections the kernel holds while the server thread accepts: a burst beyond the
#: listen backlog (the standard library's default is 5) gets "connection reset" or a
#: retry delay instead of the answer (a 503 when the server is busy).
LISTEN_BACKLOG = 256
#: The longest file name under /static/ worth looking up (the page's are short).
MAX_STATIC_NAME = 64
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class InspectorServer(ThreadingHTTPServer):
    """A threading HTTP server holding the :class:`Api` its handlers call."""

    daemon_threads = True  # a stuck client never keeps the process alive at exit
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        api: Api,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_requests: int = 16,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if ":" in host:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)
        self.api = api
        self.slots = threading.BoundedSemaphore(max_requests)
        self.max_requests = max_requests
        self.log = log
        self.loopback_only = host in LOOPBACK

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in str(host) else f"http://{host}:{port}/"

    def serve_until(self, stopped: Callable[[], bool], poll_s: float = 0.5) -> None:
        """Answer requests until ``stopped()`` is true; it is asked at least every ``poll_s``.

        For a caller that stops on a signal (``tinylm serve`` on Ctrl-C): its handler
        only sets a flag that this loop reads. ``serve_forever`` stopped by a
        ``KeyboardInterrupt`` instead is unreliable: the exception is raised wherever
        the main thread happens to be, and inside a weakref callback or a finaliser
        (a finished request's thread being freed) Python prints it, drops it, and the
        server goes on.
        """
        self.timeout = poll_s  # handle_request returns after this long without a request
        while not stopped():
            self.handle_request()

    def allowed_hosts(self) -> set[str]:
        port = self.server_address[1]
        return {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}


@functools.cache
def static_names() -> frozenset[str]:
    """The page's files: a request names one of these or gets a 404, never a disk lookup."""
    return frozenset(p.name for p in STATIC_DIR.iterdir() if p.is_file())


class Handler(BaseHTTPRequestHandler):
    """Routes a request to the :class:`Api`, and its answer (or error) back as JSON."""

    server: InspectorServer
    server_version = "tinylm-inspector"
    timeout = SOCKET_TIMEOUT_S

    # -- routing ---------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._host_allowed() or not self._origin_allowed():
            return
        url = urlsplit(self.path)
        api = self.server.api
        if url.path in ("/", "/index.html"):
            self._static("index.html")
        elif url.path.startswith("/static/"):
            self._static(url.path[len("/static/") :])
        elif url.path == "/api/runs":
            self._answer(api.describe)
        elif url.path == "/api/metrics":
            query = dict(parse_qsl(url.query))
            self._answer(lambda: api.metrics(query))
        else:
            self._send_json(404, {"error": f"no such page {url.path!r}"})

    def do_POST(self) -> None:  # noqa: N802
        try:  # first, so that every answer, refusals too, comes after the whole body
            raw = self._read_body()
        except ApiError as exc:
            self.close_connection = True
            self._send_json(exc.status, {"error": exc.message})
            return
        if not self._host_allowed() or not self._origin_allowed():
            return
        api = self.server.api
        routes: dict[str, Callable[[dict[str, Any]], Any]] = {
            "/api/tokenize": api.tokenize,
            "/api/next": api.next_token,
            "/api/attention": api.attention,
            "/api/lens": api.lens,
        }
        streams: dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[[Any], Any]]] = {
            "/api/generate": (api.start_generation, api.generate),
            "/api/chat": (api.start_chat, api.chat),
        }
        path = urlsplit(self.path).path
        if path not in streams and path not in routes:
            self._send_json(404, {"error": f"no such endpoint {path!r}"})
            return
        try:
            self._check_json_content_type()
            body = parse_body(raw)
        except ApiError as exc:
            self._send_json(exc.status, {"error": exc.message})
            return
        if path in streams:
            self._stream(body, *streams[path])
        else:
            self._answer(lambda: routes[path](body))

    # -- answers ---------------------------------------------------------------------------

    def _answer(self, handler: Callable[[], Any]) -> None:
        """Run one handler in a request slot; answer its result or its error as JSON."""
        if not self.server.slots.acquire(blocking=False):
            self._busy()
            return
        try:
            status, answer = 200, handler()
        except ApiError as exc:
            status, answer = exc.status, {"error": exc.message}
        except Exception as exc:  # a bug: say so, keep serving
            status, answer = 500, self._internal_error(exc)
        finally:
            self.server.slots.release()
        self._send_json(status, answer)

    def _stream(
        self,
        body: dict[str, Any],
        start: Callable[[dict[str, Any]], Any],
        events_of: Callable[[Any], Any],
    ) -> None:
        """A generation as server-sent events: ``data: {json}`` per token, then ``done``.

        ``start`` checks the request (its error is a JSON answer, no stream begun);
        ``events_of`` makes the events of the request it returned.
        """
        if not self.server.slots.acquire(blocking=False):
            self._busy()
            return
        try:
            try:
                request = start(body)
            except ApiError as exc:
                self._send_json(exc.status, {"error": exc.message})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            events = events_of(request)
            try:
                for event in events:
                    self._send_event(event)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the page stopped listening (Stop, or closed): stop generating
            except Exception as exc:
                self._send_event({"type": "error", **self._internal_error(exc)})
            finally:
                events.close()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        except Exception as exc:
            self._send_json(500, self._internal_error(exc))
        finally:
            self.server.slots.release()

    def _send_event(self, event: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        self.wfile.flush()

    def _static(self, name: str) -> None:
        if name not in static_names():
            shown = name if len(name) <= MAX_STATIC_NAME else name[:MAX_STATIC_NAME] + "..."
            self._send_json(404, {"error": f"no such file {shown!r}"})
            return
        path = STATIC_DIR / name
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPES.get(path.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self._common_headers()
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status: int, answer: Any) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self._common_headers()
        self.end_headers()
        self.wfile.write(data)

    def _common_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors (a malformed request line, say) as JSON like every other answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._send_json(code, {"error": message or self.responses.get(code, ("error",))[0]})

    # -- checks ----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(411, "the request needs a Content-Length header")
        try:
            size = int(length)
        except ValueError:
            raise ApiError(400, f"bad Content-Length {length!r}") from None
        if size < 0:
            raise ApiError(400, f"bad Content-Length {length!r}")
        if size > MAX_BODY_BYTES:
            self._drain(size)
            raise ApiError(
                413, f"the request body is {size:,} bytes; the limit is {MAX_BODY_BYTES:,}"
            )
        return self.rfile.read(size) if size > 0 else b""

    def _drain(self, size: int) -> None:
        """Read and drop up to ``MAX_DRAIN_BYTES`` of a body, for ``DRAIN_SECONDS`` at most.

        A client sends its whole body before it reads the answer (Python's
        ``http.client`` does); closing the connection while it still sends makes
        the kernel reset it, and the answer is lost.
        """
        left = min(size, MAX_DRAIN_BYTES)
        deadline = time.monotonic() + DRAIN_SECONDS
        with contextlib.suppress(OSError):
            self.connection.settimeout(DRAIN_SECONDS)
            while left > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)

    def _check_json_content_type(self) -> None:
        """A POST's body must be declared JSON: a cross-origin page cannot send that unasked."""
        kind = self.headers.get("Content-Type", "")
        if kind.split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, f"the request body must be sent as application/json, not {kind!r}")

    def _origin_allowed(self) -> bool:
        """A request a browser sends from another site's page carries its ``Origin``: refuse it.

        The page's own requests name this server (the origin is ``http://`` and the
        ``Host`` the browser addressed); requests from scripts and curl carry none.
        """
        origin = self.headers.get("Origin")
        host = self.headers.get("Host", "")
        if origin is None or (host and origin == f"http://{host}"):
            return True
        self._send_json(403, {"error": f"requests from origin {origin!r} are refused"})
        return False

    def _host_allowed(self) -> bool:
        """On loopback, only requests addressed to loopback (see the module docstring)."""
        host = self.headers.get("Host", "")
        if not self.server.loopback_only or host in self.server.allowed_hosts():
            return True
        self._send_json(403, {"error": f"requests for host {host!r} are refused"})
        return False

    def _busy(self) -> None:
        limit = self.server.max_requests
        self._send_json(503, {"error": f"the server is busy ({limit} requests at once); retry"})

    def _internal_error(self, exc: Exception) -> dict[str, str]:
        traceback.print_exception(exc)
        return {"error": f"internal error ({type(exc).__name__}: {exc}); see the server's log"}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")
