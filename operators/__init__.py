"""interleaf's operators; the hottest modules run from their compiled copies when built
(`operators/native.py`)."""
from operators import native as _native

_native.install()
