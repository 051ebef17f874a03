"""Bytes in and out: where inputs and outputs live (`storage`), WARC records (`warc`, `read`),
HTTP payload decoding (`http`), URLs (`urls`), the DOCUMENT schema (`schema`), staged writing and
the atomic commit (`writer`, `layout`), the per-WARC ledger (`ledger`) and the writer lock (`lock`)."""
