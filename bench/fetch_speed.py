"""Image fetching rate (operators/images/fetch.py) against a local server with latency and failures.

    .venv/bin/python bench/fetch_speed.py                    # 2000 URLs at concurrency 8, 32, 128, 256
    .venv/bin/python bench/fetch_speed.py --decode           # also decode + sha256 + pHash + thumbnail
    .venv/bin/python bench/fetch_speed.py --quick            # 300 URLs at 8 and 64: a short check
    .venv/bin/python bench/fetch_speed.py --chunk-factor 4   # fetch in chunks of 4 x concurrency, as
                                                             # operators/images/stage.py does

Self-contained; nothing leaves the machine. A server process (aiohttp.web on 127.0.0.1, a free
port; a separate process, so that its CPU is not counted as the fetcher's) serves a few distinct
generated JPEGs (640x480, ~38-59 KB) under distinct URLs, each answer after `--latency` seconds
(default 0.1) times a uniform jitter of +-`--jitter` (default 30%). The URLs spread over
`--hosts` (default 100) host names `hNNN.bench.test`; a resolver (operators.images.fetch.SafeResolver
with its `lookup` seam replaced) sends them all to 127.0.0.1, so the per-host limits
(`per_host`, default 4 as in FetchConfig, and aiohttp's per-host connection pool) apply per name as
they would on the web: 100 hosts x 4 = 400 >= the highest concurrency, so per_host does not cap
the runs. Failure mix (fractions of the URLs, drawn with a fixed seed):
    --flaky 0.05     503 on the first request for the URL, the image on the retry
    --missing 0.02   404
    --slow 0.01      answers only after `--timeout` + 1 s: every try times out (1 + retries tries)
The fetcher: `fetch_images(urls, FetchConfig(...))`, the public synchronous entry point, with
`allow_private_networks=True` (this bench only: the server is local), `read_timeout=--timeout`
(default 2 s, instead of the 20 s default, so the slow URLs end within the run), the default
retries (2) and backoff (0.5 s). Every concurrency uses fresh URLs (a run prefix in the path).

Reported per concurrency:
    ok img/s           ok images / wall time of the whole call (the slow URLs' timeouts included)
    to last ok         wall time until the last ok image arrived, and ok images / that time: the
                       rate without the tail of timing-out URLs
    statuses, tries    FetchResult.status counts; total tries (FetchResult.attempts summed)
    p50/p95 ms         one try's time, semaphore waits excluded (operators.images.fetch._Fetcher._try is
                       wrapped by this bench to time each try), ok tries only
    CPU s, img/CPU-s   time.process_time() of this process (all its threads) over the call; ok
                       images per CPU-second: the figure that decides cores per fetch rate
    server CPU s       the server process's CPU over the run (it shares this machine's cores)
With --decode, each ok body then goes through operators.images.decode.decode (sha256, decode, pHash) and
Decoded.stored (512 px WebP thumbnail) in this process, after the fetch (as the image stage does, per
chunk); reported: decode CPU s, end-to-end img/s (fetch wall + decode wall) and img/CPU-s of both.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import multiprocessing as mp
import os
import platform
import random
import socket
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DOMAIN = "bench.test"


# ---------------------------------------------------------------------------------------------
# Images and the server (runs in its own process)
# ---------------------------------------------------------------------------------------------

def make_jpeg(seed: int, w: int = 640, h: int = 480) -> bytes:
    """A deterministic 640x480 JPEG with gradients, shapes and noise (~38-59 KB)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    f = rng.uniform(1, 6, 4)
    r = 127 + 100 * np.sin(xx / w * np.pi * f[0]) + 27 * np.sin(yy / h * np.pi * f[2])
    g = 127 + 100 * np.cos(yy / h * np.pi * f[1])
    b = 127 + 100 * np.sin((xx + yy) / (w + h) * np.pi * f[3])
    arr = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(10, w // 3)), y0 + int(rng.integers(10, h // 3))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)((x0, y0, x1, y1), fill=fill)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=(70, 75, 80)[seed % 3])
    return buf.getvalue()


def serve(conn, latency: float, jitter: float, slow_seconds: float, n_images: int) -> None:
    """The server process: sends its port through `conn`, then serves until terminated.

    Paths: /<run>/<kind>/<i>.jpg with kind ok | flaky | missing | slow; /_stats: JSON with this
    process's CPU seconds and request counts."""
    from aiohttp import web

    images = [make_jpeg(s) for s in range(n_images)]
    seen: set[str] = set()
    counts: Counter = Counter()
    rnd = random.Random(1)

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/_stats":
            return web.json_response({"cpu": time.process_time(), "requests": dict(counts)})
        parts = path.strip("/").split("/")
        kind = parts[1] if len(parts) == 3 else "?"
        counts[kind] += 1
        if kind == "slow":
            await asyncio.sleep(slow_seconds)
        else:
            await asyncio.sleep(latency * rnd.uniform(1 - jitter, 1 + jitter))
        if kind == "missing" or kind == "?":
            return web.Response(status=404, text="not found")
        if kind == "flaky" and path not in seen:
            seen.add(path)
            return web.Response(status=503, text="try again")
        i = int(parts[2].split(".")[0])
        return web.Response(body=images[i % len(images)], content_type="image/jpeg")

    async def main() -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        conn.send(runner.addresses[0][1])
        conn.close()
        await asyncio.Event().wait()

    asyncio.run(main())


def server_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=10) as r:
        return json.loads(r.read())


# ---------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------

def make_resolver(port: int):
    from operators.images.fetch import SafeResolver

    class BenchResolver(SafeResolver):
        """SafeResolver whose DNS answer for *.bench.test is 127.0.0.1 (the rest of its checks run)."""

        async def lookup(self, host: str, port_: int, family: int) -> list[tuple]:
            if host.endswith("." + DOMAIN):
                return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port_))]
            return await super().lookup(host, port_, family)

    return BenchResolver(allow_private_networks=True)


@contextlib.contextmanager
def timed_tries(record: list):
    """Wrap _Fetcher._try to record (seconds, status, end time) of every try."""
    from operators.images import fetch as fetch_mod

    orig = fetch_mod._Fetcher._try

    async def _try(self, url):
        t = time.monotonic()
        out = await orig(self, url)
        end = time.monotonic()
        record.append((end - t, out.status if out.kind != "redirect" else "redirect", end))
        return out

    fetch_mod._Fetcher._try = _try
    try:
        yield
    finally:
        fetch_mod._Fetcher._try = orig


def make_urls(n: int, port: int, run: str, hosts: int, mix: dict[str, float], seed: int) -> list[str]:
    rng = random.Random(seed)
    kinds = []
    for _ in range(n):
        x, kind = rng.random(), "ok"
        for k, frac in mix.items():
            if x < frac:
                kind = k
                break
            x -= frac
        kinds.append(kind)
    return [f"http://h{i % hosts:03d}.{DOMAIN}:{port}/{run}/{k}/{i}.jpg" for i, k in enumerate(kinds)]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def run_one(urls: list[str], concurrency: int, args, port: int, decode: bool) -> dict:
    from operators.images.fetch import FetchConfig, fetch_images
    from operators.images.decode import DecodeConfig
    from operators.images.decode import decode as decode_image

    cfg = FetchConfig(concurrency=concurrency, per_host=args.per_host, read_timeout=args.timeout,
                      allow_private_networks=True)
    dcfg = DecodeConfig()
    resolver = make_resolver(port)
    chunk = len(urls) if args.chunk_factor <= 0 else max(1, args.chunk_factor * concurrency)
    tries: list = []
    results = []
    fetch_wall = fetch_cpu = dec_wall = dec_cpu = 0.0
    dec_status: Counter = Counter()
    srv0 = server_stats(port)["cpu"]
    t_start = time.monotonic()
    last_ok = t_start
    with timed_tries(tries):
        for lo in range(0, len(urls), chunk):
            part = urls[lo:lo + chunk]
            w, c = time.perf_counter(), time.process_time()
            got = fetch_images(part, cfg, resolver=resolver)
            fetch_wall += time.perf_counter() - w
            fetch_cpu += time.process_time() - c
            results.extend(got)
            ok_ends = [end for _s, st, end in tries if st == "ok"]
            last_ok = max([last_ok, *ok_ends])
            if decode:
                w, c = time.perf_counter(), time.process_time()
                for r in got:
                    if r.ok:
                        d = decode_image(r.data, dcfg)
                        dec_status[d.status] += 1
                        if d.ok:
                            d.stored(dcfg)
                dec_wall += time.perf_counter() - w
                dec_cpu += time.process_time() - c
    srv1 = server_stats(port)["cpu"]
    statuses = Counter(r.status for r in results)
    ok = statuses["ok"]
    ok_lat = [s for s, st, _e in tries if st == "ok"]
    # time to the last ok image, decode time excluded (single-call runs: no decode before it)
    to_last_ok = (last_ok - t_start) if chunk >= len(urls) else float("nan")
    return {
        "concurrency": concurrency, "urls": len(urls), "chunk": chunk, "ok": ok,
        "statuses": dict(statuses), "tries": sum(r.attempts for r in results),
        "fetch_wall": fetch_wall, "fetch_cpu": fetch_cpu, "to_last_ok": to_last_ok,
        "p50_ms": 1000 * pct(ok_lat, 0.5), "p95_ms": 1000 * pct(ok_lat, 0.95),
        "server_cpu": srv1 - srv0, "bytes": sum(len(r.data) for r in results if r.ok),
        "decode_wall": dec_wall, "decode_cpu": dec_cpu, "decode_status": dict(dec_status),
    }


def status_text(st: dict) -> str:
    order = ["ok", "http_error", "timeout", "connection_error"]
    keys = order + sorted(k for k in st if k not in order)
    return ", ".join(f"{k} {st[k]}" for k in keys if st.get(k))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--urls", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128, 256])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--per-host", type=int, default=4)
    ap.add_argument("--latency", type=float, default=0.1, help="seconds per answer (default 0.1)")
    ap.add_argument("--jitter", type=float, default=0.3, help="uniform +- fraction of the latency")
    ap.add_argument("--timeout", type=float, default=2.0, help="FetchConfig.read_timeout (default 2 s)")
    ap.add_argument("--flaky", type=float, default=0.05)
    ap.add_argument("--missing", type=float, default=0.02)
    ap.add_argument("--slow", type=float, default=0.01)
    ap.add_argument("--images", type=int, default=6, help="distinct JPEGs served")
    ap.add_argument("--chunk-factor", type=int, default=0,
                    help="fetch in chunks of F x concurrency (the image stage: 4); 0: one call")
    ap.add_argument("--decode", action="store_true", help="also decode, hash and thumbnail each ok image")
    ap.add_argument("--quick", action="store_true", help="300 URLs at concurrency 8 and 64")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.urls, args.concurrency = 300, [8, 64]

    mix = {"flaky": args.flaky, "missing": args.missing, "slow": args.slow}
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child, args.latency, args.jitter, args.timeout + 1.0, args.images),
                       daemon=True, name="fetch-bench-server")
    proc.start()
    rows = []
    try:
        if not parent.poll(60):
            raise RuntimeError("bench server did not start within 60 s")
        port = parent.recv()
        # warm-up: imports, the first session, the server's first answers (not reported)
        run_one(make_urls(64, port, "warm", args.hosts, {}, args.seed), 16, args, port, args.decode)
        for c in args.concurrency:
            urls = make_urls(args.urls, port, f"c{c}", args.hosts, mix, args.seed + c)
            rows.append(run_one(urls, c, args, port, args.decode))
            r = rows[-1]
            print(f"  concurrency {c}: {r['ok']} ok in {r['fetch_wall']:.1f} s, CPU {r['fetch_cpu']:.1f} s",
                  file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.join(10)

    cmd = "python bench/fetch_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    sizes = [len(make_jpeg(s)) for s in range(args.images)]
    print(f"`{cmd.strip()}`: {args.urls} URLs per row over {args.hosts} hosts (per_host {args.per_host}), "
          f"{args.images} distinct JPEGs of {min(sizes) // 1000}-{max(sizes) // 1000} KB, latency "
          f"{1000 * args.latency:.0f} ms +-{100 * args.jitter:.0f}%, failures: {100 * args.flaky:g}% 503 "
          f"then ok, {100 * args.missing:g}% 404, {100 * args.slow:g}% slower than read_timeout "
          f"{args.timeout:g} s; retries 2, backoff 0.5 s; "
          + ("one fetch_images call per row" if args.chunk_factor <= 0 else
             f"fetch_images in chunks of {args.chunk_factor} x concurrency")
          + f". {os.cpu_count()} CPUs visible, Python {platform.python_version()}; server in a separate "
            f"process on the same machine.\n")
    print("| concurrency | ok img/s | wall s | to last ok: s (img/s) | statuses | tries | p50 / p95 ms "
          "| fetch CPU s | img/CPU-s | server CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        last = ("-" if r["to_last_ok"] != r["to_last_ok"]
                else f"{r['to_last_ok']:.1f} ({r['ok'] / r['to_last_ok']:,.0f})")
        print(f"| {r['concurrency']} | **{r['ok'] / r['fetch_wall']:,.0f}** | {r['fetch_wall']:.1f} | {last} "
              f"| {status_text(r['statuses'])} | {r['tries']} | {r['p50_ms']:.0f} / {r['p95_ms']:.0f} "
              f"| {r['fetch_cpu']:.1f} | **{r['ok'] / max(r['fetch_cpu'], 1e-9):,.0f}** | {r['server_cpu']:.1f} |")
    if args.decode:
        print("\nWith decode + sha256 + pHash + 512 px WebP thumbnail of every ok image (same process, after "
              "each fetch call):\n")
        print("| concurrency | decoded ok | decode CPU s | decode img/CPU-s | fetch + decode img/s "
              "| fetch + decode img/CPU-s |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            n_dec = r["decode_status"].get("ok", 0)
            cpu = r["fetch_cpu"] + r["decode_cpu"]
            print(f"| {r['concurrency']} | {n_dec} | {r['decode_cpu']:.1f} "
                  f"| {n_dec / max(r['decode_cpu'], 1e-9):,.0f} "
                  f"| **{n_dec / (r['fetch_wall'] + r['decode_wall']):,.0f}** "
                  f"| **{n_dec / max(cpu, 1e-9):,.0f}** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
