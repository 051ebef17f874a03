"""operators/images/decode.py: sniffing, safe decoding, RGB conversion, pHash, the stored copy.
Every image is generated here with Pillow; no network, no files."""
from __future__ import annotations

import hashlib
import io
import struct
import time

import numpy as np
import pytest
from PIL import Image, features

from operators.images.decode import DecodeConfig, decode, detect_format, hamming, phash
from tests.image_server import HTML, bomb_png, image_bytes, picture


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">' \
      b'<rect width="10" height="10"/></svg>'


# ---------------------------------------------------------------------------------------------
# detect_format
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, expected", [
    ("PNG", "png"), ("JPEG", "jpeg"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp"),
    ("TIFF", "tiff"), ("ICO", "ico"),
])
def test_detect_format_of_generated_images(fmt, expected):
    assert detect_format(image_bytes(fmt, size=(32, 32))) == expected


def test_detect_format_other_cases():
    ftyp = lambda major, *compat: struct.pack(">I", 16 + 4 * len(compat)) + b"ftyp" + major + \
        b"\x00\x00\x00\x00" + b"".join(compat) + b"\x00" * 16
    assert detect_format(ftyp(b"avif", b"mif1")) == "avif"
    assert detect_format(ftyp(b"mif1", b"avif")) == "avif"
    assert detect_format(ftyp(b"heic", b"mif1")) == "heic"
    assert detect_format(ftyp(b"isom", b"mp41")) is None          # a video
    assert detect_format(SVG) == "svg"
    assert detect_format(b"\xef\xbb\xbf  <svg xmlns='http://www.w3.org/2000/svg'/>") == "svg"
    assert detect_format(b'<?xml version="1.0"?><rss></rss>') is None
    assert detect_format(HTML) is None
    assert detect_format(b"") is None and detect_format(None) is None
    assert detect_format(b"BM" + b"\x00" * 40) is None           # "BM" alone is no bitmap
    assert detect_format(np.random.default_rng(0).bytes(256)) is None


# ---------------------------------------------------------------------------------------------
# decode: good images of every kind
# ---------------------------------------------------------------------------------------------

def test_png_decodes_with_all_fields():
    data = image_bytes("PNG", size=(160, 120), seed=1)
    d = decode(data)
    assert d.status == "ok" and d.error is None
    assert (d.format, d.width, d.height, d.mode, d.frames) == ("png", 160, 120, "RGB", 1)
    assert d.sha256 == hashlib.sha256(data).hexdigest() and d.bytes == len(data)
    assert len(d.phash) == 16 and int(d.phash, 16) >= 0
    assert d.rgb.mode == "RGB" and d.rgb.size == (160, 120)


def test_jpeg_and_webp_decode():
    for fmt, name in (("JPEG", "jpeg"), ("WEBP", "webp")):
        d = decode(image_bytes(fmt, size=(200, 100), seed=3, quality=80))
        assert (d.status, d.format, d.width, d.height) == ("ok", name, 200, 100)
        assert d.rgb.mode == "RGB"


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF codec")
def test_avif_decodes():
    d = decode(image_bytes("AVIF", size=(64, 48), seed=3))
    assert (d.status, d.format, d.width, d.height) == ("ok", "avif", 64, 48)


def test_cmyk_jpeg_becomes_rgb():
    img = Image.new("CMYK", (40, 30), (0, 255, 255, 0))              # pure red in CMYK
    d = decode(save(img, "JPEG", quality=95))
    assert d.status == "ok" and d.mode == "CMYK" and d.rgb.mode == "RGB"
    r, g, b = d.rgb.getpixel((20, 15))
    assert r > 200 and g < 60 and b < 60


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (30, 20), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    d = decode(data)
    assert d.status == "ok" and d.format == "gif" and d.frames == 3
    r, g, b = d.rgb.getpixel((5, 5))
    assert r > 200 and g < 50 and b < 50


def test_palette_png_with_transparency_is_composited_on_white():
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    img.paste(1, (10, 0, 20, 20))                                   # right half red
    d = decode(save(img, "PNG", transparency=0))                    # index 0 (black) transparent
    assert d.status == "ok" and d.mode == "P"
    assert d.rgb.getpixel((2, 2)) == (255, 255, 255)
    assert d.rgb.getpixel((15, 2)) == (255, 0, 0)


def test_rgba_and_la_alpha_on_white():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    d = decode(save(rgba, "PNG"))
    assert d.rgb.getpixel((5, 5)) == (255, 255, 255) and d.rgb.getpixel((1, 1)) == (0, 0, 255)
    la = Image.new("LA", (10, 10), (0, 128))
    px = decode(save(la, "PNG")).rgb.getpixel((0, 0))
    assert all(126 <= v <= 129 for v in px)                      # half-transparent black on white


def test_16_bit_png_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    img = Image.fromarray(ramp)                                  # I;16 (or I on older Pillow)
    d = decode(save(img, "PNG"))
    assert d.status == "ok" and d.mode.startswith("I")
    row = [d.rgb.getpixel((x, 0))[0] for x in range(64)]
    assert row[0] == 0 and row[-1] == 255 and 100 < row[32] < 160
    assert row == sorted(row)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6                                            # rotate 90 CW to display
    d = decode(save(picture((160, 120)), "JPEG", exif=exif))
    assert (d.width, d.height) == (120, 160) and d.rgb.size == (120, 160)


def test_big_jpeg_is_decoded_at_reduced_scale_for_the_thumbnail():
    data = save(picture((2400, 1800)), "JPEG", quality=85)
    d = decode(data, DecodeConfig(thumbnail=512))
    assert (d.width, d.height) == (2400, 1800)                   # the true size is reported
    assert max(d.rgb.size) >= 512 and max(d.rgb.size) < 2400     # but decoded with JPEG draft
    full = decode(data, DecodeConfig(thumbnail=None))
    assert full.rgb.size == (2400, 1800)


# ---------------------------------------------------------------------------------------------
# decode: bad input
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
def test_truncated_file_is_a_decode_error(fmt):
    data = image_bytes(fmt, size=(200, 150), seed=4)
    d = decode(data[: len(data) // 2])
    assert d.status == "decode_error" and d.error and d.rgb is None and d.phash is None
    assert d.sha256 == hashlib.sha256(data[: len(data) // 2]).hexdigest()


def test_corrupt_header_is_a_decode_error():
    data = bytearray(image_bytes("PNG", size=(20, 20)))
    data[16:24] = b"\xff" * 8                                    # IHDR size garbled (CRC fails)
    assert decode(bytes(data)).status == "decode_error"


def test_random_bytes_html_and_svg_are_not_images():
    d = decode(np.random.default_rng(1).bytes(4096))
    assert d.status == "not_image" and d.format is None
    d = decode(HTML)                                            # e.g. served as /fake.jpg
    assert d.status == "not_image" and "html" in d.error
    d = decode(SVG)
    assert d.status == "not_image" and d.format == "svg" and "svg" in d.error
    assert decode(b"").status == "not_image"
    assert decode(None).status == "not_image"


def test_decompression_bomb_is_refused_from_the_header():
    bomb = bomb_png(30000)                                       # 900 Mpx in ~110 KB
    assert len(bomb) < 200_000
    max_before = Image.MAX_IMAGE_PIXELS
    t = time.perf_counter()
    d = decode(bomb)
    assert time.perf_counter() - t < 1.0                         # never decoded
    assert d.status == "too_large_pixels" and d.rgb is None and d.format == "png"
    assert Image.MAX_IMAGE_PIXELS == max_before                  # the global was not touched


def test_pixel_limit_is_ours_not_pillows():
    d = decode(bomb_png(8000))                                   # 64 Mpx: under Pillow's limit
    assert d.status == "too_large_pixels" and (d.width, d.height) == (8000, 8000)
    assert "max_pixels 40000000" in d.error
    small = image_bytes("PNG", size=(160, 120))
    assert decode(small, DecodeConfig(max_pixels=160 * 120)).status == "ok"
    assert decode(small, DecodeConfig(max_pixels=160 * 120 - 1)).status == "too_large_pixels"


def test_min_side():
    d = decode(image_bytes("PNG", size=(160, 20)), DecodeConfig(min_side=32))
    assert d.status == "too_small" and (d.width, d.height) == (160, 20)


# ---------------------------------------------------------------------------------------------
# The stored copy
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["webp", "jpeg", "png"])
def test_stored_copy_is_a_thumbnail_in_the_store_format(fmt):
    d = decode(image_bytes("PNG", size=(800, 400), seed=2))
    cfg = DecodeConfig(thumbnail=128, store_format=fmt, store_quality=80)
    out = d.stored(cfg)
    back = decode(out)
    assert back.status == "ok" and back.format == fmt and (back.width, back.height) == (128, 64)
    assert hamming(d.phash, back.phash) <= 6


def test_stored_copy_keeps_small_images_and_original_bytes():
    data = image_bytes("PNG", size=(100, 80), seed=2)
    d = decode(data)
    assert decode(d.stored(DecodeConfig(thumbnail=512))).width == 100    # never enlarged
    assert d.stored(DecodeConfig(thumbnail=None)) == data
    assert decode(b"junk").stored() is None


@pytest.mark.parametrize("kwargs, key", [
    ({"max_pixels": 0}, "max_pixels"), ({"min_side": -1}, "min_side"), ({"thumbnail": 4}, "thumbnail"),
    ({"store_format": "gif"}, "store_format"), ({"store_quality": 101}, "store_quality"),
])
def test_decode_config_validation(kwargs, key):
    with pytest.raises(ValueError, match=rf"images\.decode\.{key}\b"):
        DecodeConfig(**kwargs)


# ---------------------------------------------------------------------------------------------
# Perceptual hash
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_phash_is_stable_under_resize_and_reencode(seed):
    original = picture((320, 240), seed=seed)
    h0 = decode(save(original, "PNG")).phash
    for size, fmt, kw in (((160, 120), "JPEG", {"quality": 60}), ((480, 360), "JPEG", {"quality": 40}),
                          ((320, 240), "WEBP", {"quality": 50}), ((200, 150), "PNG", {})):
        h = decode(save(original.resize(size, Image.Resampling.BILINEAR), fmt, **kw)).phash
        assert hamming(h0, h) <= 6, (size, fmt)


def test_phash_separates_different_pictures():
    hashes = [phash(picture((320, 240), seed=s)) for s in range(6)]
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            assert hamming(hashes[i], hashes[j]) > 16, (i, j)


def test_hamming():
    assert hamming("0" * 16, "0" * 16) == 0
    assert hamming("0" * 16, "f" * 16) == 64
    assert hamming("8000000000000001", "0000000000000000") == 2
