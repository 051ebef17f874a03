"""CLIP (open_clip) image-text similarity: `ClipScorer` embeds images and text blocks and scores each
image against the text around it (`window_scores`). Ray-free, like the NSFW scorers.

CLIP never runs with random weights outside tests: `ClipScorer` refuses to build without
`images.clip.weights`; tests/clip_models.py builds a tiny random model through the same loading path.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import numpy as np
from operators.images.config import ClipConfig
from operators.images.models import check_exists, local_copy, register_model_config, torch_device

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# CLIP (open_clip)

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
            check_exists(config.weights, "images.clip.weights")
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


