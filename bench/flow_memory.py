"""Peak memory of the whole flow's processes: the driver and every Ray worker, sampled while a
`flows.crawl` run goes (local Ray), highest resident set size (RSS) of each.

    python ../shared/tools/pages_to_warc.py --data-root ../shared/data --out /tmp/big --sets trafilatura --repeat 80
    python bench/flow_memory.py /tmp/big/trafilatura.warc.gz [--cpus 2] [--set key=value ...]

Prints the run's seconds and phases, then the peak RSS per process kind (the largest worker,
the driver, Ray's own daemons) and the object store's peak use.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sample(stop: threading.Event, peaks: dict, every: float = 0.2) -> None:
    import psutil
    me = psutil.Process()
    while not stop.is_set():
        for p in psutil.process_iter(["pid", "name", "cmdline"]):
            try:
                cmd = " ".join(p.info["cmdline"] or [])
                if p.pid == me.pid:
                    kind = "driver"
                elif "default_worker.py" in cmd or (p.info["name"] or "").startswith("ray::"):
                    kind = "worker"
                elif "ray" in cmd:
                    kind = "ray daemons"
                else:
                    continue
                rss = p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            peaks[(kind, p.pid)] = max(peaks.get((kind, p.pid), 0), rss)
        stop.wait(every)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("warcs", nargs="+")
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    from flows.crawl import run
    from flows.ray_ops import init_ray
    from flows.config import load_config
    out = tempfile.mkdtemp(prefix="interleaf-mem-")
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs/local.yaml",
                      [f"ray.num_cpus={args.cpus}"] + args.set, input=args.warcs, output=out)
    size = sum(os.path.getsize(w) for w in args.warcs)
    init_ray(None, args.cpus)
    peaks: dict = {}
    stop = threading.Event()
    t = threading.Thread(target=sample, args=(stop, peaks), daemon=True)
    t.start()
    res = run(cfg, list(args.warcs))
    stop.set()
    t.join()
    pages = next(s for s in res.stats if s["name"] == "read")["counters"].get("out", 0)
    print(f"input: {len(args.warcs)} WARC(s), {size / 2**30:.2f} GiB, {pages} HTML pages; run {res.seconds:.1f} s")
    by_kind: dict[str, list[int]] = {}
    for (kind, _pid), rss in peaks.items():
        by_kind.setdefault(kind, []).append(rss)
    print("| process | count | peak RSS of the largest | sum of peaks |\n|---|---|---|---|")
    for kind, values in sorted(by_kind.items()):
        print(f"| {kind} | {len(values)} | {max(values) / 2**20:,.0f} MiB | {sum(values) / 2**20:,.0f} MiB |")


if __name__ == "__main__":
    main()
