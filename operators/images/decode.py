"""Image bytes -> checked, decoded picture: format sniffing, safe decoding, hashes, stored copy.

Ray-free and network-free. `decode(data, config)` never raises on bad input: every failure is a
`status` with a short `error`:

    ok                a picture; `rgb` holds its first frame in RGB
    not_image         the bytes are no raster image we decode (HTML, text, video, SVG, ...)
    decode_error      looks like an image but Pillow cannot decode it (truncated, corrupt)
    too_large_pixels  the header declares more than `max_pixels` pixels (never decoded)
    too_small         a side is under `min_side`

Decompression bombs: Pillow's `Image.MAX_IMAGE_PIXELS` is process-global, so this module never
sets it. `Image.open` reads the header only; the declared size is checked against
`DecodeConfig.max_pixels` before any pixel is decoded. Pillow's own bomb error (raised above twice
its global limit) is also reported as `too_large_pixels`.

The perceptual hash is the classic DCT pHash (as imagehash.phash): 32x32 grayscale, 2-D DCT-II,
the top-left 8x8 coefficients thresholded at their median, 64 bits as 16 hex digits. Near
duplicates (resized, re-encoded) differ by a few bits; `hamming` counts them.
"""
from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

from operators.io.formats import detect_format  # noqa: F401 (the decoder's own check; tests import it here)
from operators.images.config import STORE_FORMATS, DecodeConfig  # noqa: F401

STATUSES = ("ok", "not_image", "decode_error", "too_large_pixels", "too_small")


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------

@dataclass
class Decoded:
    status: str
    error: str | None = None
    format: str | None = None
    width: int | None = None            # as displayed (EXIF orientation applied)
    height: int | None = None
    mode: str | None = None             # Pillow mode of the file (before conversion to RGB)
    frames: int | None = None           # >1: animated (the first frame is used)
    sha256: str | None = None           # of the original bytes
    phash: str | None = None            # 16 hex digits
    bytes: int = 0                      # size of the original bytes
    rgb: Image.Image | None = field(default=None, repr=False, compare=False)
    original: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def stored(self, config: DecodeConfig | None = None) -> bytes | None:
        """The copy to keep: the original bytes when `config.thumbnail` is None, else the picture
        shrunk to fit `thumbnail` (never enlarged) and re-encoded as `store_format`. None unless ok."""
        if self.status != "ok" or self.rgb is None:
            return None
        config = config or DecodeConfig()
        if config.thumbnail is None:
            return self.original
        img = self.rgb
        if max(img.size) > config.thumbnail:
            img = img.copy()
            img.thumbnail((config.thumbnail, config.thumbnail), Image.Resampling.LANCZOS)
        return encode(img, config.store_format, config.store_quality)


def encode(img: Image.Image, fmt: str = "webp", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=4)
    elif fmt == "jpeg":
        img.save(buf, "JPEG", quality=quality, optimize=True)
    elif fmt == "png":
        img.save(buf, "PNG", optimize=False)
    else:
        raise ValueError(f"unknown store format {fmt!r}")
    return buf.getvalue()


# Pillow raises these (and a few stray others) on corrupt or truncated input.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError,
                  KeyError, ZeroDivisionError, AttributeError, RuntimeError)


def decode(data: bytes | None, config: DecodeConfig | None = None) -> Decoded:
    """Check and decode image bytes (see the module doc for statuses). Never raises on bad data."""
    config = config or DecodeConfig()
    data = data or b""
    out = Decoded(status="ok", sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    fmt = detect_format(data)
    out.format = fmt
    if fmt is None:
        return _fail(out, "not_image", _describe_unknown(data))
    if fmt == "svg":
        return _fail(out, "not_image", "svg (vector image, not decoded)")
    try:
        img = Image.open(io.BytesIO(data))      # header only
        width, height = img.size
        out.mode = img.mode
        if width * height > config.max_pixels:
            return _fail(out, "too_large_pixels",
                         f"{width}x{height} = {width * height} pixels > max_pixels {config.max_pixels}",
                         width, height)
        if min(width, height) < config.min_side:
            return _fail(out, "too_small", f"{width}x{height}: a side under min_side {config.min_side}",
                         width, height)
        out.frames = int(getattr(img, "n_frames", 1) or 1)
        if out.frames > 1:
            img.seek(0)
        if config.thumbnail is not None and img.format == "JPEG":
            # decode at a reduced scale (still >= the thumbnail size): much faster for big photos
            img.draft(None, (config.thumbnail, config.thumbnail))
        img.load()
        orientation = _orientation(img)
        rgb = to_rgb(img)
        if orientation in _TRANSPOSE:
            rgb = rgb.transpose(_TRANSPOSE[orientation])
    except Image.DecompressionBombError as e:
        return _fail(out, "too_large_pixels", _short(e))
    except Image.DecompressionBombWarning as e:     # only when warnings are turned into errors
        return _fail(out, "too_large_pixels", _short(e))
    except MemoryError:
        return _fail(out, "decode_error", "out of memory while decoding")
    except _DECODE_ERRORS as e:
        return _fail(out, "decode_error", f"{type(e).__name__}: {_short(e)}")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    out.width, out.height = width, height
    out.rgb = rgb
    out.original = data
    out.phash = phash(rgb)
    return out


_T = Image.Transpose
# EXIF orientation -> the transposition that shows the picture upright (as ImageOps.exif_transpose)
_TRANSPOSE = {2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM, 5: _T.TRANSPOSE,
              6: _T.ROTATE_270, 7: _T.TRANSVERSE, 8: _T.ROTATE_90}


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112) or 1)
    except Exception:   # noqa: BLE001 - a broken EXIF block is no reason to drop the image
        return 1


def _fail(out: Decoded, status: str, error: str, width: int | None = None,
          height: int | None = None) -> Decoded:
    out.status, out.error, out.width, out.height = status, error, width, height
    return out


def _short(e: BaseException, limit: int = 160) -> str:
    s = str(e) or type(e).__name__
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _describe_unknown(data: bytes) -> str:
    if not data:
        return "empty body"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "html, not an image"
    return f"unknown format (starts {data[:8].hex()})"


def to_rgb(img: Image.Image) -> Image.Image:
    """The picture in RGB: alpha composited on white; palette, CMYK, 16-bit and float modes mapped
    to 8-bit RGB."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "RGBa", "La", "PA") or (mode == "P" and "transparency" in img.info) \
            or (mode in ("L", "RGB", "1") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img)
        if arr.dtype.kind == "f":
            arr = np.nan_to_num(arr.astype(np.float64))
            lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
            scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        else:
            arr = arr.astype(np.int64)
            hi = int(arr.max(initial=0))
            if mode.startswith("I;16") or hi > 255:
                scaled = arr / (65535.0 if hi <= 65535 else float(hi)) * 255.0
            else:
                scaled = arr.astype(np.float64)
        gray = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB")
    return img.convert("RGB")


# ---------------------------------------------------------------------------------------------
# Perceptual hash
# ---------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _dct_rows() -> np.ndarray:
    """The first 8 rows of the (unnormalised) 32-point DCT-II matrix."""
    n = 32
    k = np.arange(8)[:, None]
    x = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * x + 1) * k / (2 * n))


def phash(img: Image.Image) -> str:
    """64-bit DCT perceptual hash of `img` as 16 hex digits."""
    gray = img.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    pixels = np.asarray(gray, dtype=np.float64)
    c = _dct_rows()
    low = c @ pixels @ c.T                 # top-left 8x8 of the 2-D DCT-II
    bits = (low > np.median(low)).flatten()
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return f"{value:016x}"


def hamming(a_hex: str, b_hex: str) -> int:
    """Number of differing bits between two hex hashes."""
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()
