"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder: $INTERLEAF_SHARED, else <repo>/../shared/data.

    Absent: the test is skipped, unless INTERLEAF_REQUIRE_SHARED=1, which makes it fail.
    """
    root = Path(os.environ.get("INTERLEAF_SHARED") or REPO.parent / "shared" / "data")
    if not root.is_dir():
        msg = f"../shared/data not found: {root} (set INTERLEAF_SHARED)"
        if os.environ.get("INTERLEAF_REQUIRE_SHARED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """moto's S3 on 127.0.0.1 for the whole test session: {"endpoint", "env"}, where env holds the
    variables that point boto3 and pyarrow at it (the Ray session's workers get them too)."""
    import logging

    from moto.server import ThreadedMotoServer

    wlog = logging.getLogger("werkzeug")
    wlog_level = wlog.level
    wlog.setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    empty = tmp_path_factory.mktemp("aws")
    env = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254 for anything
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "AWS_CONFIG_FILE": str(empty / "config"),  # no profile of the user's may redirect us
        "AWS_SHARED_CREDENTIALS_FILE": str(empty / "credentials"),
    }
    try:
        yield {"endpoint": endpoint, "env": env}
    finally:
        server.stop()
        wlog.setLevel(wlog_level)


@pytest.fixture(scope="module")
def moto_s3(moto_server):
    """The session's moto S3, emptied, and the environment pointing at it for this module.

    pyarrow's S3FileSystem finds the server through AWS_ENDPOINT_URL_S3 (honoured since pyarrow 15).
    Yields {"client": a boto3 S3 client, "env": the variables set, "endpoint": the server's URL}.
    """
    import urllib.request

    import boto3

    endpoint, env = moto_server["endpoint"], moto_server["env"]
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
            mp.delenv(k, raising=False)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        yield {"client": client, "env": env, "endpoint": endpoint}


@pytest.fixture(scope="session")
def ray_local(moto_server):
    """One local Ray (2 CPUs) for the whole test session, started by the first test that needs it.

    One session, not one per module: starting Ray costs seconds, and a Ray object caught in a
    reference cycle that is freed by a garbage collection after its session ended can crash the
    test process (a segmentation fault at a random later test). The workers see the session's moto
    S3 (`moto_server`), so flows reading or writing s3:// run here too."""
    import gc

    import ray
    assert not ray.is_initialized(), "Ray was started outside the ray_local fixture"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")  # no network beyond 127.0.0.1
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
                 runtime_env={"env_vars": dict(moto_server["env"])})
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        gc.collect()
        ray.shutdown()


@pytest.fixture(scope="session")
def flow_output(ray_local, tmp_path_factory):
    """The flow's output on the built-in sample WARC with configs/local.yaml, run once per test
    session: (output folder, RunResult). Tests read it; one that changes an output copies it first."""
    from flows.crawl import run
    from flows.make_sample import write_sample_warc
    from flows.config import load_config

    base = tmp_path_factory.mktemp("sample-run")
    warc = base / "sample.warc.gz"
    write_sample_warc(str(warc))
    out = base / "out"
    cfg = load_config(REPO / "configs/local.yaml", [], input=[str(warc)], output=str(out))
    res = run(cfg, [str(warc)])
    assert not res.failed
    return out, res
