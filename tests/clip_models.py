"""A tiny, RANDOMLY INITIALISED open_clip model for tests (and, at a real architecture's size,
for speed benchmarks): no pretrained CLIP weights can be had offline, so the real loading path
(`ClipScorer`, `images.clip.weights` / `model_config`) is exercised on this one; its scores mean
nothing and the pipeline never builds it."""
from __future__ import annotations

import os
import tempfile

TEST_CLIP_NAME = "interleaf-test-tiny-clip"
TEST_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def register_test_clip_config() -> str:
    """Register the tiny test architecture with open_clip under TEST_CLIP_NAME (idempotent), so
    open_clip's own loading path (create_model_and_transforms with a checkpoint file) can be tested
    on it. Returns the name."""
    import json

    import open_clip

    if TEST_CLIP_NAME not in open_clip.list_models():
        d = tempfile.mkdtemp(prefix="interleaf-clip-config-")
        with open(os.path.join(d, f"{TEST_CLIP_NAME}.json"), "w") as f:
            json.dump(TEST_CLIP_CONFIG, f)
        open_clip.add_model_config(d)
    return TEST_CLIP_NAME


def build_random_test_clip(seed: int = 0, model_name: str | None = None):
    """(model, preprocess, tokenizer) of a RANDOMLY INITIALISED open_clip model, for TESTS and
    speed benchmarks only: its similarities mean nothing, and the pipeline never uses it
    (`ClipScorer` without weights refuses to build). `model_name` None: a tiny model (32-px images,
    2 layers, 32-d embeddings; builds in well under a second); or a real architecture name such
    as "ViT-B-32" for benchmarks (same compute as the trained model). Nothing is downloaded."""
    import open_clip
    import torch

    name = model_name or register_test_clip_config()
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


def write_test_clip_files(folder: str, seed: int = 0) -> tuple[str, str]:
    """(weights, model_config) files of the tiny RANDOMLY INITIALISED test model in `folder`, for
    TESTS that run the flow with CLIP on (`images.clip.model: interleaf-test-tiny-clip`,
    `images.clip.weights`, `images.clip.model_config`): the real loading path, meaningless scores."""
    import json

    import torch

    os.makedirs(folder, exist_ok=True)
    config_path = os.path.join(folder, f"{TEST_CLIP_NAME}.json")
    with open(config_path, "w") as f:
        json.dump(TEST_CLIP_CONFIG, f)
    model, _, _ = build_random_test_clip(seed)
    weights = os.path.join(folder, "tiny-clip.pt")
    torch.save(model.state_dict(), weights)
    return weights, config_path
