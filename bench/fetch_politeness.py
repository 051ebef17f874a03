"""One slow host among many: do the others keep their rate, and does the slow one get no more
than its per-host limit?

    python bench/fetch_politeness.py [--hosts 20] [--per-host-urls 20] [--slow-seconds 2]

A local aiohttp server answers on 127.0.0.1 .. 127.0.0.N (each address is its own host for the
fetcher's per-host limits) plus one slow host that waits `--slow-seconds` before each answer.
The fetcher (operators/images/fetch.py, images.fetch defaults: concurrency 64, per_host 4) runs the fast
hosts' URLs alone, then mixed with the slow host's; the table gives the fast hosts' images per
second in both runs and the most requests the slow host had in flight at once.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators.images.fetch import FetchConfig, fetch_images  # noqa: E402
from tests.image_server import image_bytes  # noqa: E402


class Server:
    def __init__(self, hosts: list[str], slow: str, delay: float):
        self.hosts, self.slow, self.delay = hosts, slow, delay
        self.png = image_bytes("PNG", seed=3)
        self.in_flight = {h: 0 for h in hosts + [slow]}
        self.most = {h: 0 for h in hosts + [slow]}
        self.port = 0

    async def handle(self, request):
        from aiohttp import web
        host = request.transport.get_extra_info("sockname")[0]
        self.in_flight[host] += 1
        self.most[host] = max(self.most[host], self.in_flight[host])
        try:
            if host == self.slow:
                await asyncio.sleep(self.delay)
            return web.Response(body=self.png, content_type="image/png")
        finally:
            self.in_flight[host] -= 1

    def start(self) -> None:
        ready = threading.Event()

        def run():
            from aiohttp import web

            async def main():
                app = web.Application()
                app.router.add_get("/{name:.*}", self.handle)
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                first = web.TCPSite(runner, self.hosts[0], 0)
                await first.start()
                self.port = runner.addresses[0][1]
                for h in self.hosts[1:] + [self.slow]:
                    await web.TCPSite(runner, h, self.port).start()
                ready.set()
                await asyncio.Event().wait()
            asyncio.run(main())

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)


def timed(urls: list[str], cfg: FetchConfig, fast: set[str]) -> tuple[float, float, int]:
    """(seconds until every fast URL is done, seconds in all, fast URLs ok)."""
    t0 = time.perf_counter()
    done_fast = [0.0]
    ok = [0]

    def arrived(i, r):
        if urls[i] in fast:
            done_fast[0] = time.perf_counter() - t0
            ok[0] += r.status == "ok"
    fetch_images(urls, cfg, on_result=arrived)
    return done_fast[0], time.perf_counter() - t0, ok[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--per-host-urls", type=int, default=20)
    ap.add_argument("--slow-urls", type=int, default=40)
    ap.add_argument("--slow-seconds", type=float, default=2.0)
    args = ap.parse_args()
    hosts = [f"127.0.0.{i}" for i in range(1, args.hosts + 1)]
    slow = f"127.0.0.{args.hosts + 1}"
    srv = Server(hosts, slow, args.slow_seconds)
    srv.start()
    fast = [f"http://{h}:{srv.port}/img/{i}.png" for i in range(args.per_host_urls) for h in hosts]
    slow_urls = [f"http://{slow}:{srv.port}/img/{i}.png" for i in range(args.slow_urls)]
    mixed = [u for pair in zip(slow_urls, fast) for u in pair] + fast[len(slow_urls):]
    cfg = FetchConfig(allow_private_networks=True, read_timeout=30.0)
    alone, _, ok_alone = timed(fast, cfg, set(fast))
    with_slow, total, ok_mixed = timed(mixed, cfg, set(fast))
    print("| run | fast URLs | fast hosts done after s | fast images/s | slow host: most in flight |")
    print("|---|---|---|---|---|")
    print(f"| {args.hosts} fast hosts alone | {ok_alone} | {alone:.2f} | {len(fast) / alone:.0f} | - |")
    print(f"| + 1 host answering in {args.slow_seconds:g} s ({args.slow_urls} URLs) | {ok_mixed} | "
          f"{with_slow:.2f} | {len(fast) / with_slow:.0f} | {srv.most[slow]} (per_host {cfg.per_host}) |")
    print(f"(the slow host's {args.slow_urls} URLs took {total:.1f} s: {args.slow_urls} / {cfg.per_host} x "
          f"{args.slow_seconds:g} s = {args.slow_urls / cfg.per_host * args.slow_seconds:.0f} s at its limit)")


if __name__ == "__main__":
    main()
