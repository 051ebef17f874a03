"""Fetch again the images earlier runs could not get, and rewrite their documents in place.

    python -m flows.retry_images --config configs/local.yaml --output OUT [--run RUN_ID ...]
                                 [--status timeout ...] [--set dotted.key=value ...]

A crawl run with `images.failed: keep` publishes documents whose failed images stay in place with
their status. A retry run finds, in the committed document files of the given runs (default:
every run of OUT), the images whose failure may pass another time (`--status`, default
timeout, connection_error, not_fetched, and http_error with no status or 408/425/429/5xx), and
resolves only those URLs again through the crawl's image stage (WARC records are not re-read:
fetch, decode, score, CLIP). Every other image keeps its earlier result. Then the image rules run
on the whole document again (failed / nsfw / CLIP threshold / min_images, from this config): a
document now dropped moves to `rejected/`.

Each document file that held a retried image is rewritten under its own name, through the same
commit protocol as a crawl run (intent first, roll-forward after a crash), so readers see the old
file or the new one, never a mix, and no document twice. Newly decoded images go to `images/`
(and `image_embeddings/`) like a crawl run's. The retry's own record is `_runs/<id>/stats.json`
(`"kind": "retry_images"`). Exit 1 when the run failed, 2 on a config or input error.

Documents published with `images.failed: remove` (the default) no longer hold their failed
images; there is nothing to retry in them (the retry says so: 0 retryable images).
"""
from __future__ import annotations

import argparse
import json
import logging
import posixpath
import sys
import time
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from flows.config import ConfigError, RunConfig, load_config
from operators.images.stage import RETRY_STATUSES, retry_reference_rows, retryable
from operators.io.schema import DOCUMENT, validate_documents
from operators.io.storage import resolve
from operators.io.writer import commit, recover, split_by_selection, staging_dir, write_text

log = logging.getLogger("interleaf.retry")

FILE = "_file"   # the document file a row came from, carried through the image stage


def document_files(output: str, run_ids: list[str] | None = None) -> list[str]:
    """Committed document files of `run_ids` (all runs when None), relative to the output, sorted.
    A crawl run's files are named documents/part-<run_id>-<part>.parquet."""
    fs, root = resolve(output)
    root = root.rstrip("/")
    infos = fs.get_file_info(pafs.FileSelector(posixpath.join(root, "documents"), allow_not_found=True))
    names = sorted(posixpath.basename(i.path) for i in infos
                   if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
    if run_ids:
        names = [n for n in names if any(n.startswith(f"part-{r}-") for r in run_ids)]
    return [posixpath.join("documents", n) for n in names]


def _count_retryable(batch: pa.Table, output: str, statuses: tuple[str, ...]) -> pa.Table:
    """(file, images) -> the number of retryable images of the file's kept documents."""
    fs, root = resolve(output)
    counts = []
    for rel in batch["file"].to_pylist():
        t = pq.read_table(posixpath.join(root.rstrip("/"), rel), filesystem=fs,
                          columns=["image_info", "drop_reason", "images"])
        n = 0
        for images, infos, dropped in zip(t["images"].to_pylist(), t["image_info"].to_pylist(),
                                          t["drop_reason"].to_pylist()):
            if dropped is None:
                n += len({u for u, m in zip(images, infos) if u and retryable(m, statuses)})
        counts.append(n)
    return pa.table({"file": batch["file"], "images": pa.array(counts, pa.int64())})


def _read_files(batch: pa.Table, output: str) -> pa.Table:
    """(file) rows -> every document of those files, with `_file`."""
    fs, root = resolve(output)
    parts = []
    for rel in batch["file"].to_pylist():
        t = validate_documents(pq.read_table(posixpath.join(root.rstrip("/"), rel), filesystem=fs))
        parts.append(t.append_column(FILE, pa.array([rel] * t.num_rows, pa.string())))
    return pa.concat_tables(parts) if parts else DOCUMENT.empty_table().append_column(FILE, pa.array([], pa.string()))


def _write_file(group: pa.Table, output: str, run_id: str, select_enabled: bool, compression: str | None,
                row_group_rows: int) -> pa.Table:
    """All documents of one file -> its replacement (staged under retry/) and the rows now
    rejected (staged under rejected/); returns (src, dst) rows, dst null for a new part."""
    fs, root = resolve(output)
    stage = staging_dir(root.rstrip("/"), run_id)
    rel = group[FILE][0].as_py()
    name = posixpath.basename(rel)
    docs = validate_documents(group.drop_columns([FILE]).sort_by("id"))
    split = split_by_selection(docs, select_enabled)
    out = []
    for table, folder, dst in ((split["documents"], "retry", rel), (split["rejected"], "rejected", None)):
        if folder == "rejected" and table.num_rows == 0:
            continue
        path = posixpath.join(stage, folder, name)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        pq.write_table(table, path, filesystem=fs, compression=compression, row_group_size=row_group_rows)
        out.append((posixpath.relpath(path, root.rstrip("/")), dst))
    return pa.table({"src": [s for s, _ in out], "dst": pa.array([d for _, d in out], pa.string())})


def run(cfg: RunConfig, run_ids: list[str] | None = None, statuses: tuple[str, ...] = RETRY_STATUSES,
        run_id: str | None = None) -> dict:
    """Retry the failed images of `run_ids` (all runs when None) in `cfg.output`; returns the run
    record. Holds the output's writer lock (operators/io/lock.py) throughout, as a crawl run does."""
    from flows.crawl import new_run_id
    from operators.io.lock import WriterLock
    run_id = run_id or new_run_id()
    with WriterLock(cfg.output, run_id, cfg.lock, command=" ".join(sys.argv)) as lock:
        return _run_locked(cfg, run_ids, statuses, run_id, lock)


def _run_locked(cfg: RunConfig, run_ids: list[str] | None, statuses: tuple[str, ...], run_id: str, lock) -> dict:
    import ray

    from flows.crawl import versions, write_record
    from flows.ray_ops import StatsCollector, init_ray

    t0 = time.time()
    recovered = recover(cfg.output)
    if recovered:
        log.warning("rolled forward the interrupted commit of run(s) %s", ", ".join(recovered))
    files = document_files(cfg.output, run_ids)
    write_text(cfg.output, f"_runs/{run_id}/config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    write_text(cfg.output, f"_runs/{run_id}/versions.json", json.dumps(versions(), indent=2))
    init_ray(cfg.ray.address, cfg.ray.num_cpus)
    collector = StatsCollector.remote(cfg.ray.max_errors_kept)
    try:
        record = _retry(cfg, files, run_ids, statuses, run_id, lock, collector)
    except Exception as e:   # the run record says so (a retry run that raised used to leave none)
        write_record(cfg.output, run_id, {
            "run_id": run_id, "kind": "retry_images", "status": "failed", "failure": f"{type(e).__name__}: {e}"[:2000],
            "started": datetime.fromtimestamp(t0, timezone.utc).isoformat(), "seconds": round(time.time() - t0, 3),
            "retried_runs": run_ids or "all", "statuses": list(statuses), "files": [], "operators": []})
        raise
    finally:
        ray.kill(collector)   # also when the run raised: no actor left behind
    record.update(started=datetime.fromtimestamp(t0, timezone.utc).isoformat(), seconds=round(time.time() - t0, 3))
    write_record(cfg.output, run_id, record)   # stats.json and report.md
    return record


def _retry(cfg: RunConfig, files: list[str], run_ids: list[str] | None, statuses: tuple[str, ...], run_id: str,
           lock, collector) -> dict:
    """The retry run's work: count, resolve, rewrite, commit; returns its record (less timing)."""
    import ray

    from flows.pipeline import partitions
    from flows.ray_ops import resolve_images, stage_embeddings, stage_images
    counts: list[dict] = []
    if files:
        counts = ray.data.from_items([{"file": f} for f in files], override_num_blocks=len(files)).map_batches(
            _count_retryable, fn_kwargs={"output": cfg.output, "statuses": statuses},
            batch_format="pyarrow").take_all()
    todo = sorted(c["file"] for c in counts if c["images"])
    retryable_images = sum(c["images"] for c in counts)
    staged: list[str] = []
    replace: dict[str, str] = {}
    if todo:
        parts = partitions(cfg)
        ds = ray.data.from_items([{"file": f} for f in todo], override_num_blocks=len(todo)).map_batches(
            _read_files, fn_kwargs={"output": cfg.output}, batch_format="pyarrow").materialize()
        ds, unique, scores = resolve_images(
            ds, None, cfg.images, parts, collector,
            retry=lambda b: retry_reference_rows(b, statuses))
        ds = ds.materialize()
        staged += stage_images(unique, cfg.output, run_id, cfg.images.keep_bytes, parts)
        if scores is not None and cfg.images.clip.enabled and cfg.images.clip.embeddings_table:
            staged += stage_embeddings(scores, cfg.output, run_id, cfg.images.clip.model, parts)
        comp = None if cfg.writer.compression == "none" else cfg.writer.compression
        written = ds.groupby(FILE).map_groups(
            _write_file, batch_format="pyarrow",
            fn_kwargs={"output": cfg.output, "run_id": run_id, "select_enabled": cfg.select.enabled,
                       "compression": comp, "row_group_rows": cfg.writer.row_group_rows}).take_all()
        for row in written:
            if row["dst"]:
                replace[row["src"]] = row["dst"]
            else:
                staged.append(row["src"])
    lock.check()
    final = commit(cfg.output, run_id, staged, replace) if (staged or replace) else []
    stats = ray.get(collector.get.remote())
    fetch = next((s for s in stats if s["name"] == "fetch"), {"counters": {}})["counters"]
    record = {
        "run_id": run_id,
        "kind": "retry_images",
        "status": "ok",
        "retried_runs": run_ids or "all",
        "statuses": list(statuses),
        "document_files_checked": len(files),
        "document_files_rewritten": sorted(replace.values()),
        "retryable_images": retryable_images,
        "now_ok": fetch.get("status_ok", 0),
        "files": final,
        "operators": stats,
    }
    return record


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m flows.retry_images", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="YAML run config (its images section is used)")
    p.add_argument("--output", help="the output to repair; replaces the config's output")
    p.add_argument("--run", action="append", default=[], metavar="RUN_ID",
                   help="retry only this run's documents (repeatable; default: every run)")
    p.add_argument("--status", action="append", default=[], metavar="STATUS",
                   help=f"image statuses to fetch again (repeatable; default: {', '.join(RETRY_STATUSES)} and "
                        f"transient http_error)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set, output=args.output)
        fs, root = resolve(cfg.output)
        if fs.get_file_info(posixpath.join(root.rstrip("/"), "documents")).type != pafs.FileType.Directory:
            raise ConfigError(f"no documents/ in {cfg.output}: nothing to retry")
        if not cfg.images.enabled:
            raise ConfigError("images.enabled is false: a retry run resolves images; enable it")
        from flows.crawl import check_image_models
        check_image_models(cfg.images)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from operators.io.lock import LockLost, OutputLocked
    try:
        record = run(cfg, args.run or None, tuple(args.status) or RETRY_STATUSES)
    except (OutputLocked, LockLost) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(f"retry {record['run_id']}: {record['retryable_images']} retryable image(s) in "
          f"{record['document_files_checked']} document file(s); now ok: {record['now_ok']}; "
          f"files rewritten: {len(record['document_files_rewritten'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
