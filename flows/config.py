"""Run configuration: frozen dataclasses loaded from YAML, with strict validation.

Every section is a frozen dataclass owned by the operator it configures; `RunConfig` composes them.
Unknown keys and wrong types are errors that name the dotted key, so a typo fails at start, not
after an hour on the cluster. `--set dotted.key=value` overrides are parsed as YAML scalars.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from operators.text.clean import CleanConfig
from operators.text.pii import PiiConfig
from operators.dedup.clusters import DedupConfig
from operators.text.extract import ExtractConfig
from operators.images.config import ImagesConfig
from operators.text.langid import LangIdConfig
from operators.io.ledger import LedgerConfig
from operators.io.lock import LockConfig
from operators.text.quality import QualityConfig
from operators.text.select import SelectConfig
from operators.io.warc import ReaderConfig
from operators.io.writer import WriterConfig


class ConfigError(ValueError):
    """A config that cannot be used; the message says which key and what to change."""


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None          # cluster address; None = RAY_ADDRESS if set, else a local Ray
    num_cpus: int | None = None         # CPUs for a local Ray (None = all); ignored on a cluster
    records_per_batch: int = 64         # HTML records per batch through the operators (bounds a task's memory)
    bytes_per_task: int = 16_000_000    # bytes of WARC per processing task: a WARC is read in spans of about this
                                        # size, each by its own task, so every CPU has work whatever the number of WARCs
    max_errors_kept: int = 1000         # error records kept in stats.json (the rest are counted)

    def __post_init__(self):
        for k in ("records_per_batch", "bytes_per_task"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ray.{k} must be an integer >= 1, got {v!r}")


@dataclass(frozen=True)
class RunConfig:
    input: tuple[str, ...] = ()         # WARC files, globs or folders (local or s3://)
    output: str = "out/local"           # output folder or URI
    max_failed_warc_fraction: float = 0.1  # the run fails when more WARCs than this are unreadable/damaged
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    langid: LangIdConfig = field(default_factory=LangIdConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    writer: WriterConfig = field(default_factory=WriterConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    lock: LockConfig = field(default_factory=LockConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def config_hash(self) -> str:
        """Hash of everything that changes the output rows (not where they come from or go, nor
        scheduling: Ray, the ledger's commit units)."""
        d = self.to_dict()
        for k in ("input", "output", "ray", "ledger", "lock"):
            d.pop(k, None)
        for k in ("cc_base", "s3_anonymous", "retries", "retry_backoff", "concurrency"):   # where/how bytes are read
            d.get("reader", {}).pop(k, None)
        d.get("dedup", {}).pop("single_task_max_documents", None)   # which path, not what it gives
        d.get("writer", {}).pop("part_rows", None)                   # how rows are split into files
        blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting lists to tuples and dicts to dataclasses."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: must not be null")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {tp}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [value]  # a single path is a list of one
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (elem, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, elem, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _kt, vt = typing.get_args(tp)
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got a boolean {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types raise ConfigError."""
    where = prefix or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        dotted = ", ".join(f"{prefix + '.' if prefix else ''}{k}" for k in unknown)
        raise ConfigError(f"unknown config key {dotted} (known keys here: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix + '.' if prefix else ''}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # __post_init__ checks raise ValueError naming the key
        raise ConfigError(f"{where}: {e}") from e


def apply_override(data: dict, assignment: str) -> None:
    """Apply one `dotted.key=value` (value parsed as YAML) to a raw config mapping, in place."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected dotted.key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {assignment!r}: empty key part")
    node = data
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {p} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def load_config(path: str | Path | None, overrides: list[str] = (), **replace: Any) -> RunConfig:
    """Read a YAML config, apply `--set` overrides and keyword replacements, validate."""
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: the top level must be a mapping")
    for o in overrides:
        apply_override(data, o)
    for k, v in replace.items():
        if v is not None:
            data[k] = v
    return from_dict(RunConfig, data)
