"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _gc_before_ray_shutdown():
    """Collect garbage before every `ray.shutdown()` of the test session: Ray objects caught in
    reference cycles (an ObjectRefGenerator, an ObjectRef in a traceback's frame) must be freed
    while their Ray session is alive; freed by a later garbage collection, after the session ended
    and another started, they can crash the test process."""
    import gc

    import ray
    original = ray.shutdown

    def shutdown(*args, **kwargs):
        gc.collect()
        return original(*args, **kwargs)
    ray.shutdown = shutdown
    yield
    ray.shutdown = original


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


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory):
    """moto's S3 on 127.0.0.1 and the environment pointing at it (no bucket yet).

    pyarrow's S3FileSystem finds the server through AWS_ENDPOINT_URL_S3 (honoured since pyarrow 15).
    Yields {"client": a boto3 S3 client, "env": the variables set, "endpoint": the server's URL}.
    """
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    wlog = logging.getLogger("werkzeug")
    wlog_level = wlog.level
    wlog.setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254 for anything
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    empty = tmp_path_factory.mktemp("aws")
    env["AWS_CONFIG_FILE"] = str(empty / "config")  # no profile of the user's may redirect us
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(empty / "credentials")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
            mp.delenv(k, raising=False)
        try:
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            yield {"client": client, "env": env, "endpoint": endpoint}
        finally:
            server.stop()
            wlog.setLevel(wlog_level)
