"""The one module that talks to Ray: operators and their declared resources to Ray Data calls.

Flows describe pipelines with `apply(ds, factory, ...)` and `write_documents(...)`; Ray API drift
touches only this file. Operator counts travel to a `StatsCollector` actor after every batch, so no
worker accumulates them and the driver gets one table at the end.
"""
from __future__ import annotations

import logging
import os
import uuid
from types import GeneratorType
from typing import Any, Callable, Iterable

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, Datasink
from ray.data.block import BlockAccessor

from operators.base import Operator
from operators.stats import Stats
from operators.writer import PartWriter, WriterConfig

log = logging.getLogger(__name__)


def init_ray(address: str | None, num_cpus: int | None) -> None:
    """Connect to `address`, or to RAY_ADDRESS when set, or start a local Ray."""
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"log_to_driver": True, "logging_level": logging.WARNING}
    if address:
        kwargs["address"] = address
    elif not os.environ.get("RAY_ADDRESS") and num_cpus:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = True


@ray.remote(num_cpus=0)
class StatsCollector:
    """Sums the count deltas that operators send from their workers."""

    def __init__(self, max_errors: int = 1000):
        self.stats: dict[str, Stats] = {}
        self.order: list[str] = []
        self.max_errors = max_errors

    def add(self, delta: dict) -> None:
        name = delta["name"]
        if name not in self.stats:
            self.stats[name] = Stats(name)
            self.order.append(name)
        self.stats[name].merge(delta)

    def get(self) -> list[dict]:
        return [self.stats[n].to_dict() for n in self.order]


def ship(collector, stats: Stats) -> None:
    """Send the counts gathered since the last call. Waits for the collector, so that everything a
    task counted has arrived by the time the task ends (the driver reads the totals after the last
    task; fire-and-forget calls could still be in flight then). One round trip per batch."""
    delta = stats.drain()
    if delta["counters"] or delta["errors"]:
        ray.get(collector.add.remote(delta))


class _Runner:
    """Builds the operator once per worker process (or actor) and forwards its counts."""

    def __init__(self, factory: Callable[[], Operator], collector, key: str = ""):
        self.factory = factory
        self.key = key
        self.collector = collector
        self.op: Operator | None = None

    def _ship(self) -> None:
        ship(self.collector, self.op.stats)

    def __call__(self, batch: pa.Table):
        if self.op is None:
            self.op = self.factory()
        res = self.op(batch)
        if isinstance(res, GeneratorType):
            for out in res:
                self._ship()
                yield out
        else:
            self._ship()
            yield res
        self._ship()


_TASK_RUNNERS: dict[str, _Runner] = {}


def _run_task(batch: pa.Table, runner: _Runner):
    """Stateless-task entry: reuse one operator per worker process for the same runner."""
    cached = _TASK_RUNNERS.get(runner.key)
    if cached is None:
        while len(_TASK_RUNNERS) >= 16:  # a long-lived worker serves many flows: keep the newest
            _TASK_RUNNERS.pop(next(iter(_TASK_RUNNERS)))
        cached = _TASK_RUNNERS[runner.key] = runner
    yield from cached(batch)


def apply(ds: ray.data.Dataset, factory: Callable[[], Operator], op_cls: type[Operator],
          collector, **overrides: Any) -> ray.data.Dataset:
    """Map `op_cls` (built by `factory`) over `ds` with the resources it declares."""
    res = op_cls.resources
    batch_size = overrides.pop("batch_size", res.batch_size)
    kwargs: dict[str, Any] = dict(batch_format="pyarrow", batch_size=batch_size,
                                  num_cpus=res.num_cpus, zero_copy_batch=True)
    if res.num_gpus:
        kwargs["num_gpus"] = res.num_gpus
    kwargs.update(overrides)
    if res.pool_size:
        return ds.map_batches(_Runner, fn_constructor_kwargs={"factory": factory, "collector": collector},
                              compute=ActorPoolStrategy(min_size=1, max_size=res.pool_size), **kwargs)
    key = f"{op_cls.name}:{uuid.uuid4().hex}"  # one operator instance per worker process and flow
    return ds.map_batches(_run_task, fn_kwargs={"runner": _Runner(factory, collector, key)}, **kwargs)


class DocumentSink(Datasink):
    """Each write task stages one Parquet part per table; the driver commits them after the run."""

    def __init__(self, output: str, run_id: str, config: WriterConfig, select_enabled: bool, collector):
        self.output = output
        self.run_id = run_id
        self.config = config
        self.select_enabled = select_enabled
        self.collector = collector
        self.staged: list[str] = []

    def write(self, blocks: Iterable, ctx) -> list[str]:
        w = PartWriter(self.output, self.run_id, f"{ctx.task_idx:06d}", self.config, self.select_enabled)
        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            if table.num_rows:
                w.write(table)
        staged = w.close()
        ship(self.collector, w.stats)
        return staged

    def on_write_complete(self, write_result) -> None:
        for staged in write_result.write_returns:
            self.staged.extend(staged)

    @property
    def supports_distributed_writes(self) -> bool:
        return True
