"""What a byte string is: the image format its magic bytes name (the WARC reader's image records,
the fetcher's first bytes and the decoder all ask)."""
from __future__ import annotations

import struct

_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


def detect_format(data: bytes | None) -> str | None:
    """The image format named by the magic bytes of `data` (jpeg, png, gif, webp, bmp, tiff, avif,
    heic, ico, svg), else None. SVG is sniffed from text; it is reported but not decoded."""
    if not data or len(data) < 4:
        return None
    head = data[:32]
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack_from("<I", head, 14)[0] in _BMP_DIB_SIZES:
        return "bmp"
    if head[4:8] == b"ftyp" and len(head) >= 12:
        size = struct.unpack_from(">I", head, 0)[0]
        brands = {head[8:12]}
        box = data[16:min(max(size, 16), 256)]
        brands.update(box[i:i + 4] for i in range(0, len(box) - 3, 4))
        if brands & _AVIF_BRANDS:
            return "avif"
        if brands & _HEIC_BRANDS:
            return "heic"
        return None  # mp4, mov, ...: video
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and len(head) >= 6 \
            and struct.unpack_from("<H", head, 4)[0] > 0:
        return "ico"
    if _is_svg(data):
        return "svg"
    return None


def _is_svg(data: bytes) -> bool:
    text = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not text.startswith((b"<?xml", b"<svg", b"<!doctype svg", b"<!--")):
        return False
    return b"<svg" in text
