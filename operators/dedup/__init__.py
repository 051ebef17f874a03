"""Deduplication: MinHash keys (`minhash`), URL / exact / near-duplicate clustering and the keep
rule (`clusters`), one unit's dedup on its key tables (`unit`), the persistent index (`index`)
and its probe parts (`probe`), and repeated images (`repeated_images`)."""
