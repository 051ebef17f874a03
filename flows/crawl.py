"""The main job: WARC files to interleaved documents in Parquet.

    python -m flows.crawl --config configs/local.yaml [--input PATH_OR_GLOB ...] [--output DIR]
                          [--set dotted.key=value ...] [--no-select]

Runs on the Ray cluster at `ray.address` / RAY_ADDRESS, or on a local Ray. Writes
`documents/`, `rejected/` and `_runs/<run_id>/` (config, stats, versions) under the output.
Exits 1 when the run failed (config error, no input, too many unreadable WARCs), 0 otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import secrets
import sys
import time
from datetime import datetime, timezone

import yaml

from flows.report import format_stats, summarize
from flows.config import ConfigError, RunConfig, load_config
from operators.text.documents import RunInfo
from operators.text.langid import LanguageModel
from operators.io.ledger import entries as ledger_entries
from operators.io.ledger import finished, pending, read_ledger, stage_entries, units
from operators.io.lock import LockLost, OutputLocked, WriterLock
from operators.io.schema import PIPELINE_VERSION
from operators.io.storage import expand_inputs
from operators.io.writer import (clean_abandoned, commit, commit_state, ensure_dir, recover, roll_forward, run_dir,
                              write_text)

log = logging.getLogger("interleaf")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {"interleaf": PIPELINE_VERSION, "python": platform.python_version()}
    for pkg in ("ray", "pyarrow", "FastWARC", "Resiliparse", "selectolax", "trafilatura", "duckdb"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    from operators import native   # compiled copies in use on the driver's machine (flows.native)
    out["compiled"] = ", ".join(f"{native.PACKAGE}.{m}: {state}" for m, state in native.status().items())
    return out


@dataclasses.dataclass
class RunResult:
    run_id: str
    output: str
    stats: list[dict]
    files: list[str]
    failed: bool
    seconds: float
    n_files: int = 0      # WARCs read
    n_failed: int = 0     # of which damaged or unreadable
    skipped: int = 0      # inputs the ledger has as finished


def dedup_record(counts: dict) -> dict:
    """The clustering's counts as a stats entry: numbers as counters, capped buckets as errors."""
    examples = counts.get("capped_examples") or []
    return {"name": "dedup",
            "counters": {k: v for k, v in counts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "errors": [{"kind": "capped_bucket", **(e if isinstance(e, dict) else {"bucket": str(e)})}
                       for e in examples]}


CLIP_OFF = ("images.clip.enabled is false (no CLIP weights configured): no image-text similarity scores, "
            "no CLIP filtering in this run")


def _with_run_id(batch, run_id: str):
    import pyarrow as pa
    return batch.append_column("run_id", pa.array([run_id] * batch.num_rows, pa.string()))


def run_unit(cfg: RunConfig, paths: list[str], run_id: str, invocation: str, ledger: dict[str, dict],
             lock: WriterLock | None = None, extra_stats: list[dict] | None = None) -> RunResult:
    """One commit unit: the flow over `paths`, committed as run `run_id` together with the
    ledger entries of its WARCs; writes the unit's run record and report (`extra_stats`: entries
    the record carries besides the unit's own, such as the invocation's housekeeping)."""
    return finish_unit(cfg, paths, run_id, invocation, ledger, *start_unit(cfg, paths, run_id), lock=lock,
                       extra_stats=extra_stats)


def start_unit(cfg: RunConfig, paths: list[str], run_id: str) -> tuple:
    """A unit's run folder and its streaming pass: (start time, streamed unit)."""
    from flows.pipeline import stream_unit
    from flows.ray_ops import init_ray
    t0 = time.time()
    write_text(cfg.output, f"_runs/{run_id}/config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    write_text(cfg.output, f"_runs/{run_id}/versions.json", json.dumps(versions(), indent=2))
    init_ray(cfg.ray.address, cfg.ray.num_cpus)
    return t0, stream_unit(cfg, paths, run_id)


def finish_unit(cfg: RunConfig, paths: list[str], run_id: str, invocation: str, ledger: dict[str, dict],
                t0: float, streamed, lock: WriterLock | None = None,
                extra_stats: list[dict] | None = None) -> RunResult:
    """Dedup, images, the final pass and the commit of a streamed unit, then its run record.
    `lock`: the output's writer lock, checked before the commit (a run that lost it commits nothing)."""
    from flows.pipeline import finish_unit as finish_flow
    info = RunInfo(run_id=run_id, config_hash=cfg.config_hash())
    rdir = run_dir(cfg.output, run_id)
    unit = finish_flow(cfg, paths, run_id, streamed)
    stats = unit.stats + list(extra_stats or [])
    read = next((s for s in stats if s["name"] == "read"), {"counters": {}, "errors": []})
    index_staged = []
    if cfg.ledger.enabled:
        index_staged.append(stage_entries(cfg.output, run_id, ledger_entries(
            paths, unit.reads, unit.per_warc, read.get("errors", []), ledger, run_id, invocation)))
    t_commit = time.time()
    if lock is not None:
        lock.check()
    files = commit(cfg.output, run_id, unit.staged + index_staged)
    if cfg.dedup.enabled and cfg.dedup.index:
        try:   # keep the probe parts few (operators/dedup/probe.compact); an optimisation, never fatal
            from operators.dedup.probe import compact
            merged = compact(cfg.output)
            if merged:
                log.info("dedup index: merged small probe parts into %s", merged)
        except Exception as e:  # noqa: BLE001
            log.warning("dedup index compaction skipped: %s: %s", type(e).__name__, e)
    phases = unit.phases
    phases.append({"name": "commit", "seconds": round(time.time() - t_commit, 3),
                   "documents": sum(v[0] for v in unit.per_warc.values()), "cpu_seconds": None})
    dedup_stats = dedup_record(unit.dedup_counts) if unit.dedup_counts is not None else None
    if cfg.images.enabled and not cfg.images.clip.enabled:
        stats.append({"name": "clip", "counters": {"enabled": 0}, "errors": [{
            "kind": "clip_off", "reason": CLIP_OFF}]})
    if dedup_stats is not None:
        stats.insert(next((i for i, s in enumerate(stats) if s["name"] == "duplicates"), len(stats)), dedup_stats)
    seconds = time.time() - t0
    n_files, n_failed = read["counters"].get("files", 0), read["counters"].get("files_failed", 0)
    failed = n_files > 0 and n_failed / n_files > cfg.max_failed_warc_fraction
    record = {
        "run_id": run_id,
        "invocation": invocation,
        "status": "failed" if failed else "ok",
        "failure": (f"{n_failed} of {n_files} WARC files damaged or unreadable "
                    f"(more than max_failed_warc_fraction={cfg.max_failed_warc_fraction})") if failed else None,
        "started": datetime.fromtimestamp(t0, timezone.utc).isoformat(),
        "seconds": round(seconds, 3),
        "inputs": paths,
        "config_hash": info.config_hash,
        "pipeline_version": PIPELINE_VERSION,
        "files": files,
        "warcs": {p: {"records": o.records, "errors": o.error_kinds} for p, o in unit.reads.items()},
        "phases": phases,
        "cpus": unit.cpus,
        "operators": stats,
    }
    write_record(cfg.output, run_id, record)
    log.info("run record in %s", rdir)
    return RunResult(run_id, cfg.output, stats, files, failed, seconds, n_files, n_failed)


def record_unit_failure(cfg: RunConfig, unit_id: str, batch: list[str], ledger: dict[str, dict], invocation: str,
                        e: BaseException, lock: WriterLock) -> bool:
    """A unit raised: its WARCs' ledger entries. Returns True when the unit is committed after all.

    Where it raised decides: before its commit intent, nothing of it is visible, so its WARCs are
    `failed` (retried by the next run), in entries committed under a run id of their own
    (`<unit>-failed`: a unit's own id may already name a committed ledger file, which they would
    replace). After its intent (the moves, the manifest, its run record or report), its commit
    is completed now if it was cut short and its own entries stand (`done`): marking its WARCs
    failed would read and publish them again."""
    state = commit_state(cfg.output, unit_id)
    if state == "intent":
        lock.check()
        try:
            roll_forward(cfg.output, unit_id)
        except Exception as again:  # noqa: BLE001 - the store still fails: the next run's recover finishes it
            log.error("unit %s: its interrupted commit could not be completed now (%s: %s); the next run "
                      "completes it before anything else", unit_id, type(again).__name__, again)
    if state != "none":
        log.error("unit %s raised after its commit began; the commit is complete and its WARCs stay done",
                  unit_id)
        return True
    if cfg.ledger.enabled:
        fail_id = f"{unit_id}-failed"
        rows = ledger_entries(batch, {}, {}, [], ledger, fail_id, invocation,
                              unit_error=f"{type(e).__name__}: {e}"[:2000])
        lock.check()
        commit(cfg.output, fail_id, [stage_entries(cfg.output, fail_id, rows)])
    return False


def write_record(output: str, run_id: str, record: dict) -> None:
    """`_runs/<run_id>/stats.json` and its report (a report that cannot be drawn is logged, not fatal)."""
    write_text(output, f"_runs/{run_id}/stats.json", json.dumps(record, indent=2, default=str))
    try:
        from flows.report import write_report
        write_report(output, run_id, record)
    except ImportError:
        pass
    except Exception as e:  # noqa: BLE001 - the run is committed; its report is a convenience
        log.warning("report for run %s not written: %s", run_id, e)


def run(cfg: RunConfig, paths: list[str], run_id: str | None = None) -> RunResult:
    """Run the crawl flow on `paths`: the WARCs the ledger does not record as finished (at most
    `ledger.max_warcs`), in commit units of `ledger.warcs_per_commit`, each committed on its own
    with its WARCs' ledger entries (operators/io/ledger.py). One unit: its run id is `run_id`; more:
    `<run_id>-u0001`, ... and `_runs/<run_id>/stats.json` sums them up (`"kind": "invocation"`).
    The whole run holds the output's writer lock (operators/io/lock.py): OutputLocked when another
    run holds it."""
    invocation = run_id or new_run_id()
    t0 = time.time()
    ensure_dir(cfg.output)
    with WriterLock(cfg.output, invocation, cfg.lock, command=" ".join(sys.argv)) as lock:
        return _run_locked(cfg, paths, invocation, t0, lock)


def _run_locked(cfg: RunConfig, paths: list[str], invocation: str, t0: float, lock: WriterLock) -> RunResult:
    recovered = recover(cfg.output)   # roll forward a commit a crash interrupted, before reading the index
    if recovered:
        log.warning("rolled forward the interrupted commit of run(s) %s", ", ".join(recovered))
    housekeeping = [housekeeping_stats(cfg, recovered)]
    ledger = read_ledger(cfg.output) if cfg.ledger.enabled else {}
    todo = pending(paths, ledger, cfg.ledger) if cfg.ledger.enabled else list(paths)
    done_before = sum(1 for p in paths if finished(ledger.get(p), cfg.ledger)) if cfg.ledger.enabled else 0
    if done_before:
        log.warning("%d of %d WARC(s) already finished in %s's ledger: skipped", done_before, len(paths), cfg.output)
    batches = units(todo, cfg.ledger) if cfg.ledger.enabled else [todo]
    if len(batches) == 1:   # one unit: it is the invocation (its record is the run record)
        try:
            return dataclasses.replace(run_unit(cfg, batches[0], invocation, invocation, ledger, lock,
                                                extra_stats=housekeeping), skipped=done_before)
        except Exception as e:
            record_unit_failure(cfg, invocation, batches[0], ledger, invocation, e, lock)
            raise
    results: list[RunResult] = []
    unit_failures: list[dict] = []
    consecutive = 0

    def failed(unit_id: str, batch: list[str], e: BaseException) -> bool:
        """Record a unit that raised (its WARCs are failed unless it committed); True when the run
        must stop: at once when the unit did not commit (a later unit committed before it would
        change which copy of a duplicate the index keeps, so the next run, which takes the WARCs
        up again in input order, would not give the clean run's corpus), and after two units in a
        row that raised after their commit (their data is in; something else is wrong)."""
        nonlocal consecutive
        log.error("unit %s failed: %s: %s", unit_id, type(e).__name__, e, exc_info=e)
        committed = record_unit_failure(cfg, unit_id, batch, ledger, invocation, e, lock)
        unit_failures.append({"run_id": unit_id, "warcs": len(batch), "error": f"{type(e).__name__}: {e}",
                              "committed": committed})
        consecutive += 1
        if not committed:
            log.error("unit %s did not commit: stopping (the ledger keeps it and the rest, in order, for the "
                      "next run)", unit_id)
            return True
        if consecutive >= 2:
            log.error("two units in a row failed: stopping (the ledger keeps the rest for the next run)")
        return consecutive >= 2

    def collect(finishing) -> bool:
        """Wait for a unit's finish (dedup, images, final pass, commit); True when the run must stop."""
        nonlocal consecutive
        unit_id, batch, future = finishing
        try:
            results.append(future.result())
            consecutive = 0
            return False
        except Exception as e:  # noqa: BLE001 - a unit that raised: its WARCs are failed, the next unit runs
            return failed(unit_id, batch, e)

    # Units overlap: unit n+1's streaming pass (read → keys, most of the work) runs while unit n
    # deduplicates, resolves its images, writes and commits in a thread; unit n+1's own dedup
    # starts only after unit n committed, so it sees unit n in the index.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unit-finish") as finisher:
        finishing = None
        for n, batch in enumerate(batches):
            unit_id = f"{invocation}-u{n + 1:04d}"
            log.info("unit %d of %d: %d WARC(s) as run %s", n + 1, len(batches), len(batch), unit_id)
            try:
                started, error = start_unit(cfg, batch, unit_id), None
            except Exception as e:  # noqa: BLE001
                started, error = None, e
            if finishing is not None and collect(finishing):
                finishing = None
                break
            finishing = None
            if error is not None:
                if failed(unit_id, batch, error):
                    break
                continue
            finishing = (unit_id, batch, finisher.submit(finish_unit, cfg, batch, unit_id, invocation, ledger,
                                                       *started, lock=lock))
        if finishing is not None:
            collect(finishing)
    return _invocation_record(cfg, invocation, t0, paths, todo, done_before, results, unit_failures, housekeeping)


def housekeeping_stats(cfg: RunConfig, recovered: list[str]) -> dict:
    """Before a run: commits it rolled forward (`recover`) and the staging folders of crashed runs
    it removed (`writer.abandoned_after_hours` after their last write), as a stats entry."""
    removed = clean_abandoned(cfg.output, cfg.writer.abandoned_after_hours * 3600)
    if removed:
        log.warning("removed the staging folders of %d crashed run(s): %s", len(removed),
                    ", ".join(r["run_id"] for r in removed))
    return {"name": "housekeeping", "errors": [], "counters": {
        "commits_rolled_forward": len(recovered), "abandoned_staging_removed": len(removed),
        "abandoned_staging_files": sum(r["files"] for r in removed),
        "abandoned_staging_bytes": sum(r["bytes"] for r in removed)}}


def _invocation_record(cfg: RunConfig, invocation: str, t0: float, paths: list[str], todo: list[str],
                       done_before: int, results: list[RunResult], unit_failures: list[dict],
                       extra_stats: list[dict] | None = None) -> RunResult:
    """Sum up the units of one invocation into `_runs/<invocation>/stats.json`."""
    from operators.stats import Counts
    merged = Counts()
    if extra_stats:
        merged.add(extra_stats)
    for r in results:
        merged.add(r.stats)
    stats = merged.table()
    n_files = sum(r.n_files for r in results) + sum(u["warcs"] for u in unit_failures)
    n_failed = sum(r.n_failed for r in results) + sum(u["warcs"] for u in unit_failures if not u["committed"])
    failed = (n_files > 0 and n_failed / n_files > cfg.max_failed_warc_fraction) or (not results and bool(todo))
    seconds = time.time() - t0
    files = sorted(f for r in results for f in r.files)
    record = {
        "run_id": invocation, "kind": "invocation",
        "status": "failed" if failed else "ok",
        "failure": (f"{n_failed} of {n_files} WARC files failed (more than max_failed_warc_fraction="
                    f"{cfg.max_failed_warc_fraction})") if failed else None,
        "started": datetime.fromtimestamp(t0, timezone.utc).isoformat(), "seconds": round(seconds, 3),
        "inputs": todo, "inputs_total": len(paths), "inputs_already_done": done_before,
        "units": [r.run_id for r in results], "unit_failures": unit_failures,
        "config_hash": cfg.config_hash(), "pipeline_version": PIPELINE_VERSION,
        "files": files, "operators": stats,
    }
    write_text(cfg.output, f"_runs/{invocation}/config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    write_record(cfg.output, invocation, record)
    return RunResult(invocation, cfg.output, stats, files, failed, seconds, n_files, n_failed, done_before)




def check_image_models(images) -> None:
    """Fail at start (ValueError naming the setting) when an enabled image model cannot be loaded:
    missing weights, an unknown CLIP model, no threshold for it, a package not installed."""
    from operators.images.models import check_loadable
    if images.nsfw.enabled:
        check_loadable(images.nsfw, images.clip)
    check_loadable(images.clip)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m flows.crawl", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="YAML run config (see configs/)")
    p.add_argument("--input", nargs="+", action="extend", metavar="PATH_OR_GLOB",
                   help="WARC files (.warc, .warc.gz), globs or folders; replaces the config's input")
    p.add_argument("--output", help="output folder or URI; replaces the config's output")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set extract.min_image_size=64 (repeatable)")
    p.add_argument("--no-select", action="store_true",
                   help="compute drop reasons but keep every document in documents/")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    overrides = list(args.set) + (["select.enabled=false"] if args.no_select else [])
    try:
        cfg = load_config(args.config, overrides, input=args.input, output=args.output)
        if not cfg.input:
            raise ConfigError("no input: give --input or set `input` in the config")
        paths = expand_inputs(cfg.input, cc_base=cfg.reader.cc_base, io=cfg.reader.io)
        LanguageModel(cfg.langid)  # a model that cannot be loaded fails here, not in every worker
        if cfg.images.enabled:
            check_image_models(cfg.images)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"interleaf {PIPELINE_VERSION}: {len(paths)} WARC file(s) -> {cfg.output}", flush=True)
    try:
        result = run(cfg, paths)
    except (OutputLocked, LockLost) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if result.skipped and not result.n_files:
        print(f"nothing to do: all {result.skipped} WARC file(s) are finished in {cfg.output}'s ledger "
              f"(python -m flows.ledger {cfg.output}; --set ledger.enabled=false reads them again)")
        return 0
    if result.skipped:
        print(f"{result.skipped} WARC file(s) already finished in the ledger: skipped")
    print(format_stats(result.stats))
    if cfg.images.enabled and not cfg.images.clip.enabled:
        print(f"\nCLIP: off. {CLIP_OFF}.")
    elif cfg.images.enabled:
        c = cfg.images.clip
        print(f"\nCLIP: {c.model} ({c.weights}); images under similarity {c.threshold} within {c.window} "
              f"text block(s) removed")
    print(f"\noutput: {cfg.output}  (run {result.run_id}, {result.seconds:.1f} s)")
    try:
        print(summarize(cfg.output, result.run_id))
    except Exception as e:  # the summary is a convenience; the run itself is done
        print(f"(summary unavailable: {e})")
    if result.failed:
        print(f"error: run failed, see {run_dir(cfg.output, result.run_id)}/stats.json", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
