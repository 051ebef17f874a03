"""Crash-safe, incremental runs: commit units, the ledger, reruns, nightly mode, and a run killed
in the middle (driver, or a worker) then resumed, compared with a clean run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from flows.crawl import run
from flows.make_sample import write_sample_warc
from flows.query import connect
from flows.config import load_config
from operators.io.ledger import read_ledger
from tests.test_flow import ROOT

PARTS = 3
UNITS = ["ledger.warcs_per_commit=1"]


def split_warc(src: Path, folder: Path, parts: int) -> list[Path]:
    """The sample WARC's records, byte for byte, in `parts` WARCs: each HTML page with the records
    after it (its images, requests) until the next page, pages dealt round robin."""
    from warcio.archiveiterator import ArchiveIterator
    data = src.read_bytes()
    outs = [bytearray() for _ in range(parts)]
    page = -1
    with open(src, "rb") as f:
        it = ArchiveIterator(f)
        for rec in it:
            ctype = (rec.http_headers.get_header("Content-Type") or "") if rec.http_headers else ""
            if rec.rec_type == "response" and "html" in ctype:
                page += 1
            offset = it.get_record_offset()
            rec.content_stream().read()
            length = it.get_record_length()
            outs[max(page, 0) % parts] += data[offset:offset + length]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, b in enumerate(outs):
        p = folder / f"part-{i}.warc.gz"
        p.write_bytes(bytes(b))
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def warcs(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("ledger")
    write_sample_warc(str(d / "sample.warc.gz"))
    return split_warc(d / "sample.warc.gz", d / "in", PARTS)


def rerun_gives_the_clean_result(out: Path, inputs: list[str], clean_out: Path) -> None:
    """A rerun into `out` finishes what is missing: every WARC done, each document once, the
    clean run's corpus and dedup index."""
    from operators.dedup.index import read_table
    cfg = load_config(ROOT / "configs/local.yaml", UNITS, input=inputs, output=str(out))
    assert not run(cfg, inputs).failed
    ledger = read_ledger(str(out))
    assert sorted(ledger) == sorted(inputs) and all(e["state"] == "done" for e in ledger.values())
    ids = corpus_ids(out)
    assert len(ids) == len(set(ids)), "a document is published twice"
    assert sorted(ids) == sorted(corpus_ids(clean_out)), "the corpus differs from the clean run's"
    index = sorted(read_table(str(out), "docs", columns=["id"])["id"].to_pylist())
    assert index == sorted(read_table(str(clean_out), "docs", columns=["id"])["id"].to_pylist())


def corpus_ids(out: Path) -> list[str]:
    """Ids of the published corpus (documents less superseded), duplicates kept."""
    return [r[0] for r in connect(str(out)).sql("SELECT id FROM documents").fetchall()]


@pytest.fixture(scope="module")
def clean(ray_local, warcs, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("clean") / "out"
    cfg = load_config(ROOT / "configs/local.yaml", UNITS, input=[str(p) for p in warcs], output=str(out))
    res = run(cfg, [str(p) for p in warcs])
    return out, res


def test_units_commit_with_their_ledger_entries(clean, warcs):
    out, res = clean
    assert not res.failed and res.n_files == PARTS
    record = json.loads((out / "_runs" / res.run_id / "stats.json").read_text())
    assert record["kind"] == "invocation" and len(record["units"]) == PARTS
    assert (out / "_runs" / res.run_id / "report.md").exists()
    ledger = read_ledger(str(out))
    assert sorted(ledger) == sorted(str(p) for p in warcs)
    assert all(e["state"] == "done" and e["attempts"] == 1 and e["invocation"] == res.run_id for e in ledger.values())
    assert {e["run_id"] for e in ledger.values()} == set(record["units"])   # one unit per WARC
    ids = corpus_ids(out)
    assert ids and len(ids) == len(set(ids))
    con = connect(str(out))
    assert sum(e["documents"] for e in ledger.values()) == con.sql("SELECT count(*) FROM documents_all").fetchone()[0]
    assert sum(e["rejected"] for e in ledger.values()) == con.sql("SELECT count(*) FROM rejected").fetchone()[0]
    for unit in record["units"]:   # each unit: its own commit, record and WARC counts
        unit_record = json.loads((out / "_runs" / unit / "stats.json").read_text())
        assert unit_record["invocation"] == res.run_id and len(unit_record["inputs"]) == 1
        assert (out / "_index" / "_committed" / f"{unit}.json").exists()
        assert not any(k.startswith("file_") for op in unit_record["operators"] for k in op["counters"])


def test_rerun_skips_finished_warcs(clean, warcs):
    out, _ = clean
    before = corpus_ids(out)
    cfg = load_config(ROOT / "configs/local.yaml", UNITS, input=[str(p) for p in warcs], output=str(out))
    again = run(cfg, [str(p) for p in warcs])
    assert not again.failed and again.n_files == 0 and again.files == [] and again.skipped == PARTS
    record = json.loads((out / "_runs" / again.run_id / "stats.json").read_text())
    assert record["inputs"] == [] and record["inputs_already_done"] == PARTS
    assert sorted(corpus_ids(out)) == sorted(before)


def test_unreadable_warc_is_failed_then_retried_up_to_max_attempts(ray_local, warcs, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    missing = str(tmp_path / "gone.warc.gz")   # e.g. deleted between listing and reading
    overrides = UNITS + ["ledger.max_attempts=2", "max_failed_warc_fraction=0.6"]
    cfg = load_config(ROOT / "configs/local.yaml", overrides, input=[str(warcs[0])], output=str(out))
    first = run(cfg, [str(warcs[0]), missing])
    assert not first.failed and first.n_failed == 1             # 1 of 2 under the 0.6 limit
    entry = read_ledger(str(out))[missing]
    assert (entry["state"], entry["attempts"], entry["errors"]) == ("failed", 1, ["unreadable_warc"])
    assert "unreadable_warc" in entry["error"] and entry["documents"] == 0
    assert read_ledger(str(out))[str(warcs[0])]["state"] == "done"
    second = run(cfg, [str(warcs[0]), missing])                  # only the failed one is tried again
    assert second.n_files == 1 and read_ledger(str(out))[missing]["attempts"] == 2
    assert second.failed                                         # 1 of 1 failed: over the limit
    third = run(cfg, [str(warcs[0]), missing])                   # max_attempts reached: skipped
    assert third.n_files == 0 and not third.failed


def _env(tmp: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env["RAY_TMPDIR"] = tmp   # this run's own Ray: its processes are found (and stopped) by it
    return env


def test_nightly_takes_only_the_next_new_warcs(ray_local, warcs, tmp_path):  # noqa: F811
    """Three nights of `python -m flows.crawl --config configs/nightly.yaml` (its main(), in this
    process, on the test's Ray): the first two WARCs, then the third, then only a new one."""
    from flows.crawl import main
    folder = tmp_path / "in"
    folder.mkdir()
    for p in warcs:
        shutil.copy(p, folder / p.name)
    out = tmp_path / "out"
    args = ["--config", "configs/nightly.yaml", "--input", str(folder), "--output", str(out),
            "--set", "ledger.max_warcs=2", "--set", "ledger.warcs_per_commit=1",
            "--set", "images.fetch.enabled=false", "--set", "images.actors.pool_size=1",
            "--set", "dedup.num_partitions=4"]
    nights = []
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for night in range(3):
            if night == 2:   # a new WARC appears under the prefix
                shutil.copy(warcs[0], folder / "part-9.warc.gz")
            assert main(args) == 0
            nights.append({e["warc"] for e in read_ledger(str(out)).values()})
        assert main(args) == 0   # nothing left: still a success
    finally:
        os.chdir(cwd)
    names = [sorted(Path(p).name for p in n) for n in nights]
    assert names[0] == ["part-0.warc.gz", "part-1.warc.gz"]                 # the first two, in input order
    assert names[1] == ["part-0.warc.gz", "part-1.warc.gz", "part-2.warc.gz"]
    assert names[2] == names[1] + ["part-9.warc.gz"]
    new = read_ledger(str(out))[str(folder / "part-9.warc.gz")]
    assert new["state"] == "done" and new["documents"] == 0 and new["rejected"] > 0   # same pages: duplicates


def _descendants(pid: int) -> list:
    import psutil
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _stop_all(procs: list, tmp: str) -> None:
    """Stop the processes this test started: the driver's descendants seen earlier, and anything
    whose command line names this run's Ray temp dir (gcs, raylet, dashboard)."""
    import psutil
    found = {p.pid: p for p in procs}
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(tmp in part for part in (p.info["cmdline"] or [])):
                found[p.pid] = p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    for p in found.values():
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(found.values()), timeout=30)


def _wait_for_units(out: Path, proc: subprocess.Popen, n: int, timeout: float = 600) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if len(list((out / "_ledger").glob("*.jsonl"))) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {n} unit(s) committed:\n"
                        f"{proc.stderr.read()[-3000:] if proc.stderr else ''}")
        time.sleep(0.5)
    pytest.fail(f"no {n} unit(s) committed within {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["driver", "worker"])
def test_killed_run_resumes_to_the_clean_result(ray_local, clean, warcs, tmp_path, victim):  # noqa: F811
    """SIGKILL the driver (or one Ray worker process) once the first unit has committed; rerun;
    the corpus has the same document ids as the clean run, each once."""
    import psutil
    out = tmp_path / "out"
    inputs = [str(p) for p in warcs]
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="ilk-") as tmp:
        proc = subprocess.Popen([sys.executable, "-m", "flows.crawl", "--config", "configs/local.yaml",
                                 "--input", *inputs, "--output", str(out), "--set", "ray.num_cpus=2",
                                 "--set", "lock.lease_seconds=3", "--set", "lock.renew_seconds=1",
                                 *[a for u in UNITS for a in ("--set", u)]],
                                cwd=ROOT, env=_env(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        seen: list = []
        try:
            _wait_for_units(out, proc, 1)
            seen = _descendants(proc.pid)
            assert proc.poll() is None, "the run finished before it could be killed"
            if victim == "driver":
                os.kill(proc.pid, signal.SIGKILL)
            else:
                end = time.time() + 120
                workers = []
                while not workers and time.time() < end:
                    seen = list({p.pid: p for p in seen + _descendants(proc.pid)}.values())
                    workers = [p for p in seen if _is_busy_worker(p)]
                    time.sleep(0.2)
                assert workers, "no busy Ray worker process found"
                workers[0].send_signal(signal.SIGKILL)
            try:
                proc.wait(timeout=900)
            except subprocess.TimeoutExpired:
                proc.kill()
        finally:
            _stop_all(seen + [psutil.Process(proc.pid)] if proc.poll() is None else seen, tmp)
    committed = len(list((out / "_ledger").glob("*.jsonl")))
    assert committed < PARTS or victim == "worker"   # the driver died before the last unit committed
    if victim == "worker":   # Ray ran the killed worker's task again: every count is still counted once
        records = [json.loads(p.read_text()) for p in out.glob("_runs/*/stats.json")]
        run_record = next(r for r in records if r.get("kind") == "invocation")
        clean_record = json.loads((clean[0] / "_runs" / clean[1].run_id / "stats.json").read_text())
        assert {op["name"]: op["counters"] for op in run_record["operators"]} == \
            {op["name"]: op["counters"] for op in clean_record["operators"]}
    # the killed driver's writer lock expires by itself (its lease: 3 s here) ...
    from operators.io.lock import read_lock
    held = read_lock(str(out))
    assert held is not None and held["released"] is (victim == "worker")
    while victim == "driver" and read_lock(str(out))["expires"] > time.time():
        time.sleep(0.2)
    # ... and the rerun (here, in-process) takes it over and finishes what is missing
    rerun_gives_the_clean_result(out, inputs, clean[0])


def _is_busy_worker(p) -> bool:
    try:
        name = " ".join(p.cmdline())
    except Exception:  # noqa: BLE001 - gone already
        return False
    # a worker running the flow's tasks or a reader, not Ray's own agents (the raylet fate-shares
    # with the dashboard agent: killing it takes the whole local Ray down)
    return name.startswith("ray::") and not any(s in name for s in ("IDLE", "StatsCollector", "Agent"))


def test_query_has_the_ledger(clean, warcs):
    out, _ = clean
    con = connect(str(out))
    rows = con.sql("SELECT warc, state, documents FROM ledger ORDER BY warc").fetchall()
    assert [r[0] for r in rows] == sorted(str(p) for p in warcs) and {r[1] for r in rows} == {"done"}
    assert sum(r[2] for r in rows) == con.sql("SELECT count(*) FROM documents_all").fetchone()[0]


class _Fault(RuntimeError):
    """The injected failure."""


VICTIM = "-u0002"   # the second of the three units fails, once


class _FlakyFS:
    """The output's filesystem, whose second move of the victim unit's commit fails once."""

    def __init__(self, fs, victim: str, fired: dict):
        self._fs, self._victim, self._fired = fs, victim, fired

    def move(self, src, dst):
        if f"/{self._victim}/_staging/" in src and not self._fired.get("move"):
            self._fired["n"] = self._fired.get("n", 0) + 1
            if self._fired["n"] == 2:
                self._fired["move"] = True
                raise _Fault("injected: after one move of the commit")
        return self._fs.move(src, dst)

    def __getattr__(self, name):
        return getattr(self._fs, name)


def _inject(monkeypatch, step: str, victim: str) -> dict:
    """Make the commit of unit `victim` fail once at `step`; returns what fired."""
    import flows.crawl
    import flows.report
    import operators.io.writer as writer
    from operators.dedup import index as dedup_index
    fired: dict = {}

    def once() -> None:
        if not fired.get(step):
            fired[step] = True
            raise _Fault(f"injected: {step}")

    if step == "before the intent":
        real_commit = flows.crawl.commit

        def commit(output, run_id, staged, replace=None):
            if run_id == victim:
                once()
            return real_commit(output, run_id, staged, replace)
        monkeypatch.setattr(flows.crawl, "commit", commit)
    elif step in ("after the intent", "after the manifest"):
        real_write = writer.write_text
        target = writer.intent_path(victim) if step == "after the intent" else dedup_index.manifest_path(victim)

        def write_text(output, rel, text):
            real_write(output, rel, text)
            if rel == target:
                once()
        monkeypatch.setattr(writer, "write_text", write_text)
    elif step == "after a move":
        real_resolve = writer.resolve

        def resolve(output, *a):
            fs, root = real_resolve(output, *a)
            return _FlakyFS(fs, victim, fired), root
        monkeypatch.setattr(writer, "resolve", resolve)
    elif step == "in the run record":
        real_record = flows.crawl.write_record

        def write_record(output, run_id, record):
            if run_id == victim:
                once()
            return real_record(output, run_id, record)
        monkeypatch.setattr(flows.crawl, "write_record", write_record)
    elif step == "in the report":
        def write_report(output, run_id, record):
            if run_id == victim:
                once()
        monkeypatch.setattr(flows.report, "write_report", write_report)
    return fired


@pytest.mark.slow
@pytest.mark.parametrize("step", ["before the intent", "after the intent", "after a move", "after the manifest",
                                  "in the run record", "in the report"])
def test_a_commit_failing_at_any_step_then_a_rerun_give_the_clean_result(ray_local, clean, warcs, tmp_path,  # noqa: F811
                                                                         monkeypatch, step):
    """The second unit's commit fails once at `step`; a rerun finishes what is missing: the clean
    run's corpus, index and ledger, each document once. A unit that failed before its commit has
    its WARCs `failed` under `<unit>-failed` (never under its own id) and stops the run; one that
    failed after its intent is completed, stays `done`, and the run goes on."""
    from flows.crawl import new_run_id
    from operators.io.writer import commit_state
    out = tmp_path / "out"
    inputs = [str(p) for p in warcs]
    cfg = load_config(ROOT / "configs/local.yaml", UNITS, input=inputs, output=str(out))
    invocation = new_run_id()
    victim = f"{invocation}{VICTIM}"
    fired = _inject(monkeypatch, step, victim)
    first = run(cfg, inputs, run_id=invocation)
    monkeypatch.undo()
    assert fired, "the fault did not fire"
    record = json.loads((out / "_runs" / invocation / "stats.json").read_text())
    failures = {u["run_id"]: u for u in record["unit_failures"]}
    ledger = read_ledger(str(out))
    if step == "in the report":   # a report that cannot be drawn is logged, not a failure
        assert not failures
    elif step == "before the intent":
        assert failures[victim]["committed"] is False and commit_state(str(out), victim) == "none"
        assert {e["run_id"] for e in ledger.values() if e["state"] == "failed"} == {f"{victim}-failed"}
    else:
        assert failures[victim]["committed"] is True and commit_state(str(out), victim) == "committed"
        assert all(e["state"] == "done" for e in ledger.values())   # completed: its WARC is not read again
    if step == "before the intent":   # the run stopped there: the third WARC is left for the next run, in order
        assert len(record["units"]) == 1 and len(ledger) == 2
    else:                             # a unit committed after all: the run went on
        assert len(record["units"]) == PARTS - len(failures) and len(ledger) == PARTS
    assert first.failed == (step == "before the intent")   # a WARC failed: over max_failed_warc_fraction
    rerun_gives_the_clean_result(out, inputs, clean[0])


def test_a_run_removes_the_staging_folders_of_crashed_runs_after_the_grace_period(ray_local, warcs, tmp_path):  # noqa: F811
    """A run killed before its commit intent leaves `_runs/<id>/_staging/`; the next run removes
    it once nothing was written there for `writer.abandoned_after_hours`, and says so."""
    out = tmp_path / "out"
    old, fresh = out / "_runs/20260101T000000Z-aaaaaa/_staging", out / "_runs/20260101T000001Z-bbbbbb/_staging"
    for folder in (old, fresh):
        (folder / "documents").mkdir(parents=True)
        (folder / "documents/part.parquet").write_bytes(b"x" * 1000)
    day_ago = time.time() - 24 * 3600
    os.utime(old / "documents/part.parquet", (day_ago, day_ago))
    cfg = load_config(ROOT / "configs/local.yaml", ["writer.abandoned_after_hours=6"], input=[str(warcs[0])],
                      output=str(out))
    res = run(cfg, [str(warcs[0])])
    house = next(s for s in res.stats if s["name"] == "housekeeping")["counters"]
    assert house == {"commits_rolled_forward": 0, "abandoned_staging_removed": 1, "abandoned_staging_files": 1,
                     "abandoned_staging_bytes": 1000}
    assert not old.exists() and fresh.exists()      # within the grace period: maybe a run still going
    report = (out / "_runs" / res.run_id / "report.md").read_text()
    assert "the staging folders of 1 crashed run(s) removed (1 files" in report
