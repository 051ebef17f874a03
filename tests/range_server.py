"""A local HTTP file server with Range support and scripted failures, for the input tests
(standard library: http.server on 127.0.0.1, a free port, its own thread).

    with RangeServer() as srv:
        srv.add("/a.warc.gz", data, plan=["503", "503"])   # 503 twice, then the file
        srv.url("/a.warc.gz")                               # http://127.0.0.1:<port>/a.warc.gz
        srv.log                                             # [(path, Range header or None), ...]

GET and HEAD; `Range: bytes=a-b`, `bytes=a-` and `bytes=-n` answer 206 with Content-Range, a
range past the end 416; no Range: 200 with the whole file; unknown paths 404.
`plan` actions, one per request for that path, then normal service:
    "503"    503 Service Unavailable
    "reset"  the connection is reset (RST) before any answer
    "cut"    206 headers and half of the body, then a reset
"""
from __future__ import annotations

import re
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b'<Message>Please reduce your request rate.</Message></Error>')


class _Handler(BaseHTTPRequestHandler):
    server_version = "range-server/1"

    def log_message(self, *args):  # quiet
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool):
        srv: RangeServer = self.server.owner
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range")
        with srv.lock:
            srv.log.append((path, rng))
            data = srv.files.get(path)
            plan = srv.plans.get(path)
            action = plan.pop(0) if plan else None
        if data is None:
            return self._simple(404, b"not found", head)
        if action == "503":
            # as S3 says it: an XML error body (the AWS SDK parses it), and none after a HEAD
            return self._send(503, SLOW_DOWN, head, {"Content-Type": "application/xml"})
        if action == "reset":
            return self._reset()
        size = len(data)
        if rng is None:
            return self._send(200, data, head, {})
        m = _RANGE.match(rng.strip())
        if not m or (not m.group(1) and not m.group(2)):
            return self._simple(400, b"bad range", head)
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        else:
            start, end = max(size - int(m.group(2)), 0), size - 1
        if start >= size or end < start:
            return self._send(416, b"", head, {"Content-Range": f"bytes */{size}"})
        body = data[start:end + 1]
        headers = {"Content-Range": f"bytes {start}-{end}/{size}"}
        if action == "cut":
            self.send_response(206)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Range", headers["Content-Range"])
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            return self._reset()
        self._send(206, body, head, headers)

    def _send(self, status: int, body: bytes, head: bool, headers: dict):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _simple(self, status: int, body: bytes, head: bool):
        self._send(status, body, head, {})

    def _reset(self):
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def finish(self):
        try:
            super().finish()
        except (OSError, ValueError):  # the socket was reset on purpose
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # resets on purpose: no tracebacks
        pass


class RangeServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.plans: dict[str, list[str]] = {}
        self.log: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def add(self, path: str, data: bytes, plan: list[str] | None = None) -> str:
        with self.lock:
            self.files[path] = data
            self.plans[path] = list(plan or [])
        return self.url(path)

    def requests(self, path: str) -> list[str | None]:
        """The Range headers of the requests for `path`, in order (None: no Range)."""
        with self.lock:
            return [r for p, r in self.log if p == path]

    def url(self, path: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def start(self) -> "RangeServer":
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="range-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)
            self._httpd = None

    def __enter__(self) -> "RangeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
