"""From HTML to selected documents: main-content extraction (`extract`, `boilerplate`, the
`documents` operator), language ID (`langid`, `langid_rules`), block cleaning (`clean`), PII
(`pii`), the quality signals (`quality`) and score-then-select (`select`). The extractor's two hot
modules run from their compiled copies when built (operators/native.py)."""
from operators import native as _native

_native.install()
