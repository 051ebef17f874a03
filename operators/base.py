"""The operator contract: a small class that turns a batch (pyarrow.Table) into a batch.

An operator is usable without Ray: construct it with its config, call it on a table, read
`op.stats`. It declares what it needs in `resources`; `flows/ray_ops.py` is the only place that
turns that into Ray arguments. An operator whose `__call__` is a generator (the reader) yields
several bounded batches per input batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa

from operators.stats import Stats


@dataclass(frozen=True)
class Resources:
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int | None = None    # rows per call; None = whatever block Ray hands over
    pool_size: int | None = None     # None: stateless tasks; N: an actor pool of N (model loaded once)


class Operator:
    name: str = "operator"
    resources: Resources = Resources()

    def __init__(self) -> None:
        self.stats = Stats(self.name)

    def __call__(self, batch: pa.Table) -> pa.Table | Iterator[pa.Table]:
        raise NotImplementedError
