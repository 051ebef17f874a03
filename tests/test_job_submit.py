"""`ray job submit` end to end, against a Ray head this test starts and stops.

The head: `ray start --head --num-cpus 2` on free ports, with a private temp dir under /tmp (short: Unix
socket paths are limited to ~107 bytes) and token authentication with a private token
(RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH: the same variables for `ray start`, every `ray job` command
and, through the head's environment, the job's driver). Nothing is taken from the caller's Ray
environment (RAY_ADDRESS, a token in ~/.ray/auth_token). The .venv's bin is first on PATH for
`ray start`, so `python` in a job's entrypoint is the .venv's interpreter, as on a cluster whose
image has the project installed.

The jobs are submitted with the CLI as a user would: `--working-dir` the repository, non-code
folders excluded, a relative `--config`, absolute input and output paths outside the working dir.

Cleanup stops exactly that head, never with `ray stop` (it stops every Ray on the machine, other
sessions' included): the processes whose environment carries this head's marker variable or whose
command line names its temp dir, with their descendants, get SIGTERM in `ray stop`'s order (raylet,
the others, GCS), then SIGKILL after a grace period; the fixture then checks that none is left.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.make_sample import write_sample_warc
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
MARKER_VAR = "INTERLEAF_TEST_RAY_HEAD"   # set in the head's environment; every process it starts inherits it
# what the working dir upload leaves out (Ray 2.60 also skips .gitignore'd files, and .git and .venv by default)
EXCLUDES = [".venv", ".git", "out", ".cache", "bench", "**/__pycache__", ".pytest_cache", ".ruff_cache",
            "*.egg-info"]
SAMPLE_DOCUMENTS = 11   # the built-in sample's kept documents (README, tests/test_flow.py)
START_TIMEOUT = 300     # generous: a loaded 2-core CI machine
JOB_TIMEOUT = 900

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(START_TIMEOUT + 2 * JOB_TIMEOUT)]


# ------------------------------------------------------------------ the head's processes

def head_processes(marker: str, marker_var: str | None = MARKER_VAR) -> list:
    """This head's live processes, with their descendants: the temp dir `marker` in the command line, or
    (unless marker_var is None) `marker_var=marker` in the environment."""
    import psutil  # a dependency of ray

    found = {}
    for p in psutil.process_iter():
        try:
            if p.pid == os.getpid() or p.status() == psutil.STATUS_ZOMBIE:
                continue
            if marker in " ".join(p.cmdline()) or (marker_var and p.environ().get(marker_var) == marker):
                found[p.pid] = p
                for c in p.children(recursive=True):
                    found[c.pid] = c
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # gone, another user's, or a zombie waiting for init
    return list(found.values())


def _alive(procs: list) -> list:
    import psutil

    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return out


def _signal_all(procs: list, kill: bool) -> None:
    import psutil

    for p in procs:
        try:
            p.kill() if kill else p.terminate()   # psutil checks the pid was not reused
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _wait_gone(procs: list, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while (alive := _alive(procs)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def _stage(p) -> int:
    """`ray stop`'s order: the raylet first (its workers and agents go with it), the GCS last."""
    try:
        name = p.name()
    except Exception:
        return 1
    return 0 if name == "raylet" else 2 if name == "gcs_server" else 1


def stop_head(marker: str, marker_var: str | None = MARKER_VAR, grace: float = 15.0) -> list:
    """Stop this head's processes, in `ray stop`'s order (raylet, the others, GCS): SIGTERM, then SIGKILL
    what is left after `grace` seconds. Returns the survivors (none, normally).

    A few rounds: a worker the raylet was starting while it was told to stop is found by the next one.
    """
    for _ in range(3):
        procs = head_processes(marker, marker_var)
        if not procs:
            return []
        for stage in (0, 1, 2):
            batch = [p for p in procs if _stage(p) == stage]
            _signal_all(batch, kill=False)
            alive = _wait_gone(batch, grace)
            if alive:
                _signal_all(alive, kill=True)
                _wait_gone(alive, 10.0)
    return head_processes(marker, marker_var)


# ------------------------------------------------------------------ the head

@dataclass
class Head:
    address: str          # the job API: http://127.0.0.1:<dashboard port>
    env: dict             # environment for the `ray` CLI (auth, PATH, no RAY_ADDRESS)
    temp_dir: Path
    token: str
    ray: str              # the `ray` executable

    def cli(self, *args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([self.ray, *args], env=self.env if env is None else env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def job_info(self, submission_id: str) -> dict:
        req = urllib.request.Request(f"{self.address}/api/jobs/{submission_id}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


def ray_executable() -> str | None:
    here = Path(sys.executable).parent / "ray"   # the venv's, next to this interpreter (not resolved)
    return str(here) if here.exists() else shutil.which("ray")


def head_env(temp_dir: Path, token_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                        "RAY_AUTH_TOKEN_PATH", "RAY_NAMESPACE", "RAY_JOB_CONFIG_JSON_ENV_VAR")}
    env.update({
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_path),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
        MARKER_VAR: str(temp_dir),
    })
    return env


def wait_for_job_api(address: str, token: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        req = urllib.request.Request(f"{address}/api/version", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(1)
    raise TimeoutError(f"the job API at {address} did not answer within {timeout:.0f} s: {last}")


@pytest.fixture(scope="module")
def head():
    ray = ray_executable()
    if ray is None:
        pytest.skip("the `ray` CLI is not installed (pip install 'ray[default]')")
    temp_dir = Path(tempfile.mkdtemp(prefix="ilj-", dir="/tmp"))
    token = secrets.token_hex(32)
    token_path = temp_dir / "auth_token"
    token_path.write_text(token)
    token_path.chmod(0o600)
    env = head_env(temp_dir, token_path)
    dashboard_port = free_port()
    cmd = [ray, "start", "--head", "--num-cpus", "2",
           "--node-ip-address", "127.0.0.1",
           "--port", str(free_port()),
           "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
           "--include-dashboard", "true",
           # fixed by default (10001, 52365): taken when another head runs on this machine
           "--ray-client-server-port", str(free_port()),
           "--dashboard-agent-listen-port", str(free_port()),
           "--temp-dir", str(temp_dir),
           "--disable-usage-stats"]
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        started = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=START_TIMEOUT)
        assert started.returncode == 0, f"ray start failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}"
        wait_for_job_api(address, token, START_TIMEOUT)
        yield Head(address=address, env=env, temp_dir=temp_dir, token=token, ray=ray)
    finally:
        left = stop_head(str(temp_dir))
        assert not left, f"processes of the test's Ray head still running: {[p.pid for p in left]}"
        # nothing with the temp dir in its command line either (the marker check above covers the rest)
        assert not head_processes(str(temp_dir), marker_var=None), "a process still names the head's temp dir"
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def sample_warc(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("job-sample") / "sample.warc.gz"
    write_sample_warc(str(path))
    return path.resolve()


def submit(head: Head, submission_id: str, *crawl_args: str) -> subprocess.CompletedProcess:
    """`ray job submit` of `python -m flows.crawl ...`, waiting for the end (it streams the job's log)."""
    return head.cli("job", "submit", "--address", head.address, "--submission-id", submission_id,
                    "--working-dir", str(ROOT), "--runtime-env-json", json.dumps({"excludes": EXCLUDES}),
                    "--log-style", "record",
                    "--", "python", "-m", "flows.crawl", "--config", "configs/local.yaml", *crawl_args,
                    timeout=JOB_TIMEOUT)


# ------------------------------------------------------------------ the tests

def test_job_api_requires_the_token(head):
    """Token auth is on: a `ray job` command without the token is refused; with it, answered."""
    no_auth = {k: v for k, v in head.env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    r = head.cli("job", "list", "--address", head.address, env=no_auth)
    assert r.returncode != 0 and "Authentication required" in r.stdout + r.stderr, r.stdout + r.stderr
    r = head.cli("job", "list", "--address", head.address)
    assert r.returncode == 0, r.stdout + r.stderr


def test_submitted_crawl_succeeds(head, sample_warc, tmp_path):
    out = tmp_path / "out"
    sid = f"interleaf-test-{secrets.token_hex(4)}"
    r = submit(head, sid, "--input", str(sample_warc), "--output", str(out))
    log = r.stdout + r.stderr
    assert r.returncode == 0, f"job {sid} failed:\n{log[-6000:]}"
    assert f"Job '{sid}' succeeded" in log
    info = head.job_info(sid)
    assert info["status"] == "SUCCEEDED" and info["driver_exit_code"] == 0, info
    assert "working_dir" in info["runtime_env"] and info["runtime_env"]["excludes"] == EXCLUDES
    status = head.cli("job", "status", "--address", head.address, sid, "--log-style", "record")
    assert status.returncode == 0 and f"Job '{sid}' succeeded" in status.stdout + status.stderr

    # the output: committed documents (schema as tests/test_flow.py checks it) and the run record
    from operators.io.schema import DOCUMENT, validate_documents
    files = sorted((out / "documents").glob("*.parquet"))
    assert files, f"no documents/ Parquet under {out}"
    docs = []
    for f in files:
        table = pq.read_table(f)
        assert table.schema.names == DOCUMENT.names
        validate_documents(table)
        docs += table.to_pylist()
    assert len(docs) == SAMPLE_DOCUMENTS, sorted(d["url"] for d in docs)
    (run_dir,) = (out / "_runs").iterdir()
    stats = json.loads((run_dir / "stats.json").read_text())
    assert stats["run_id"] == run_dir.name and stats["status"] == "ok" and stats["inputs"] == [str(sample_warc)]
    assert {d["provenance"]["run_id"] for d in docs} == {run_dir.name}
    ops = {o["name"]: o["counters"] for o in stats["operators"]}
    assert ops["write"]["rows_documents"] == SAMPLE_DOCUMENTS
    assert f"documents: {SAMPLE_DOCUMENTS}" in log   # the job's own summary, streamed by `ray job submit`


def test_failing_job_is_failed_with_its_error(head, sample_warc, tmp_path):
    out = tmp_path / "out"
    sid = f"interleaf-test-fail-{secrets.token_hex(4)}"
    r = submit(head, sid, "--set", "extract.no_such_key=1", "--input", str(sample_warc), "--output", str(out))
    log = r.stdout + r.stderr
    assert r.returncode == 1, log[-6000:]
    assert f"Job '{sid}' failed" in log
    info = head.job_info(sid)
    assert info["status"] == "FAILED" and info["driver_exit_code"] == 2, info
    logs = head.cli("job", "logs", "--address", head.address, sid)
    assert logs.returncode == 0, logs.stdout + logs.stderr
    assert "error: unknown config key extract.no_such_key" in logs.stdout
    assert not out.exists()   # a config error fails before anything is written
