"""From HTML to selected documents: main-content extraction (`extract`, `boilerplate`, the
`documents` operator), language ID (`langid`, `langid_rules`), block cleaning (`clean`), PII
(`pii`), the quality signals (`quality`) and score-then-select (`select`)."""
