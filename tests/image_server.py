"""A local HTTP image server for the tests (aiohttp.web on 127.0.0.1, a free port, own thread),
and the generated images it serves.

    with ImageServer() as srv:          # or srv = ImageServer().start(); ...; srv.stop()
        srv.url("/good.png")            # http://127.0.0.1:<port>/good.png

Endpoints (all generated, nothing read from disk):
    /good.png /good.jpg       good images            /missing.png         404
    /slow.png                 sleeps SLOW_SECONDS    /big.png             BIG_BYTES with Content-Length
    /big-chunked.png          BIG_BYTES chunked, no Content-Length
    /fake.jpg                 HTML as text/html      /fake-typed.jpg      HTML served as image/jpeg
    /bomb.png                 a 30000x30000 PNG of ~110 KB (a decompression bomb)
    /gzip.png /br.png         the good PNG with Content-Encoding gzip / br
    /gzip-bomb.png /br-bomb.png   ENCODING_BOMB_BYTES of zeros after a PNG header, gzip / br
                              encoded (~130 KB / ~100 bytes on the wire)
    /bad-encoding.png         Content-Encoding: br on bytes that are not brotli
    /loop                     redirects to /loop2, which redirects back to /loop
    /redirect-good            302 to /good.png (relative)
    /redirect-private         302 to http://127.0.0.1:<port>/good.png
    /redirect-localhost       302 to http://localhost:<port>/good.png
    /redirect-metadata        302 to http://169.254.169.254/latest/meta-data/
    /redirect-ftp             302 to ftp://127.0.0.1/x.png
    /noai.png                 X-Robots-Tag: noai     /otherbot-noai.png   X-Robots-Tag: otherbot: noimageai
    /flaky.png?k=K            503 on the first request for K, then the PNG
    /ratelimit.png?k=K        429 with Retry-After: 0 on the first request for K, then the PNG
    /ratelimit-long.png       429 with Retry-After: 120, every time
    /always503.png            503 every time
    /reset.png                closes the connection without answering
`srv.hits[path]` counts requests per path (query string included).
"""
from __future__ import annotations

import asyncio
import io
import struct
import threading
import time
import zlib
from collections import Counter
from functools import lru_cache

from aiohttp import web

SLOW_SECONDS = 2.5
BIG_BYTES = 400_000
ENCODING_BOMB_BYTES = 128 << 20


# ---------------------------------------------------------------------------------------------
# Generated images
# ---------------------------------------------------------------------------------------------

def _gzip(data: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


def picture(size: tuple[int, int] = (160, 120), seed: int = 0):
    """A deterministic RGB test picture with structure (gradients and shapes), a PIL Image."""
    import numpy as np
    from PIL import Image, ImageDraw

    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    fx, fy = rng.uniform(1, 4, 2)
    r = (127 + 127 * np.sin(xx / w * np.pi * fx)).astype(np.uint8)
    g = (127 + 127 * np.cos(yy / h * np.pi * fy)).astype(np.uint8)
    b = ((xx * yy) % 256).astype(np.uint8) if seed % 2 else ((xx + yy) % 256).astype(np.uint8)
    img = Image.fromarray(np.stack([r, g, b], axis=-1), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        x1, y1 = x0 + int(rng.integers(5, w // 2)), y0 + int(rng.integers(5, h // 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    return img


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (160, 120), seed: int = 0, **save) -> bytes:
    buf = io.BytesIO()
    picture(size, seed).save(buf, fmt, **save)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@lru_cache(maxsize=4)
def bomb_png(side: int = 30000) -> bytes:
    """A valid 1-bit grayscale PNG of side x side pixels, all black: ~side^2/8 bytes of pixels
    that deflate to about a thousandth of that (30000: ~110 KB, built in well under a second)."""
    row = b"\x00" * (1 + (side + 7) // 8)        # filter byte 0 + packed bits
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))


HTML = b"<!DOCTYPE html><html><head><title>Not found</title></head><body>nope</body></html>\n"


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------

class ImageServer:
    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.port: int | None = None
        self.hits: Counter = Counter()
        self.started: list[tuple[str, float]] = []   # (path and query, time.monotonic()) of each request
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._seen: Counter = Counter()
        self.png = image_bytes("PNG", seed=1)
        self.jpg = image_bytes("JPEG", seed=2, quality=85)
        self.bomb = bomb_png()          # built up front: ~0.3 s, not inside a request
        self._encoded: dict[str, bytes] = {}
        for name in ("gzip", "br", "gzip-bomb", "br-bomb"):   # up front (~0.5 s), not inside a request
            self.encoded(name)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ImageServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start())
            except BaseException as e:  # noqa: BLE001 - reported to the starting thread
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:       # handlers still sleeping (/slow.png) when the tests end
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="image-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("image server did not start within 10 s")
        if errors:
            raise errors[0]
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{name:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            except Exception:  # noqa: BLE001 - stopping anyway
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    def __enter__(self) -> ImageServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def encoded(self, name: str) -> bytes:
        """The body of /gzip.png, /br.png, /gzip-bomb.png or /br-bomb.png (built on first use)."""
        if name not in self._encoded:
            import brotli
            if name == "gzip":
                self._encoded[name] = _gzip(self.png)
            elif name == "br":
                self._encoded[name] = brotli.compress(self.png)
            else:   # a PNG signature, then 128 MB of zeros, compressed a megabyte at a time
                zeros = b"\x00" * (1 << 20)
                if name == "gzip-bomb":
                    z = zlib.compressobj(9, zlib.DEFLATED, 31)
                    parts = [z.compress(self.png[:8])] + [z.compress(zeros) for _ in range(ENCODING_BOMB_BYTES >> 20)]
                    self._encoded[name] = b"".join(parts) + z.flush()
                else:
                    c = brotli.Compressor(quality=1)
                    parts = [c.process(self.png[:8])] + [c.process(zeros) for _ in range(ENCODING_BOMB_BYTES >> 20)]
                    self._encoded[name] = b"".join(parts) + c.finish()
        return self._encoded[name]

    # -- handlers ----------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[request.path_qs] += 1
        self.started.append((request.path_qs, time.monotonic()))
        key = request.query.get("k", "")
        if path == "/good.png":
            return web.Response(body=self.png, content_type="image/png")
        if path == "/good.jpg":
            return web.Response(body=self.jpg, content_type="image/jpeg")
        if path == "/slow.png":
            await asyncio.sleep(SLOW_SECONDS)
            return web.Response(body=self.png, content_type="image/png")
        if path == "/big.png":
            return web.Response(body=self.png + b"\x00" * (BIG_BYTES - len(self.png)),
                                content_type="image/png")
        if path == "/big-chunked.png":
            resp = web.StreamResponse(headers={"Content-Type": "image/png"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(self.png)
            sent = len(self.png)
            try:
                while sent < BIG_BYTES:
                    await resp.write(b"\x00" * 16384)
                    sent += 16384
                await resp.write_eof()
            except (ConnectionError, RuntimeError):
                pass  # the client hung up once it had seen enough: expected
            return resp
        if path == "/fake.jpg":
            return web.Response(body=HTML, content_type="text/html")
        if path == "/fake-typed.jpg":
            return web.Response(body=HTML, content_type="image/jpeg")
        if path == "/bomb.png":
            return web.Response(body=self.bomb, content_type="image/png")
        if path in ("/gzip.png", "/br.png", "/gzip-bomb.png", "/br-bomb.png"):
            name = path[1:-4]
            return web.Response(body=self.encoded(name), content_type="image/png",
                                headers={"Content-Encoding": name.split("-")[0]})
        if path == "/bad-encoding.png":
            return web.Response(body=b"\x8b\x00not brotli at all" * 20, content_type="image/png",
                                headers={"Content-Encoding": "br"})
        if path == "/loop":
            raise web.HTTPFound("/loop2")
        if path == "/loop2":
            raise web.HTTPFound("/loop")
        if path == "/redirect-good":
            raise web.HTTPFound("/good.png")
        if path == "/redirect-private":
            raise web.HTTPFound(f"http://127.0.0.1:{self.port}/good.png")
        if path == "/redirect-localhost":
            raise web.HTTPFound(f"http://localhost:{self.port}/good.png")
        if path == "/redirect-metadata":
            raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
        if path == "/redirect-ftp":
            raise web.HTTPFound("ftp://127.0.0.1/x.png")
        if path == "/noai.png":
            return web.Response(body=self.png, content_type="image/png", headers={"X-Robots-Tag": "noai"})
        if path == "/otherbot-noai.png":
            return web.Response(body=self.png, content_type="image/png",
                                headers={"X-Robots-Tag": "otherbot: noimageai, nofollow"})
        if path == "/flaky.png":
            self._seen[("flaky", key)] += 1
            if self._seen[("flaky", key)] == 1:
                return web.Response(status=503, text="try again")
            return web.Response(body=self.png, content_type="image/png")
        if path == "/ratelimit.png":
            self._seen[("ratelimit", key)] += 1
            if self._seen[("ratelimit", key)] == 1:
                return web.Response(status=429, text="slow down", headers={"Retry-After": "0"})
            return web.Response(body=self.png, content_type="image/png")
        if path == "/ratelimit-long.png":
            return web.Response(status=429, text="come back later", headers={"Retry-After": "120"})
        if path == "/always503.png":
            return web.Response(status=503, text="down")
        if path == "/reset.png":
            if request.transport is not None:
                request.transport.close()
            await asyncio.sleep(0.05)
            return web.Response(status=500)
        return web.Response(status=404, text="not found")
