"""The output's writer lock (operators/io/lock.py): one writer at a time, a lease that a killed run
cannot hold forever, a clear refusal, locally and on S3 (moto, tests/conftest.py)."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from operators.io.lock import (
    LOCK_FILE,
    LockConfig,
    LockLost,
    OutputLocked,
    WriterLock,
    read_lock,
)

ROOT = Path(__file__).resolve().parents[1]
QUICK = LockConfig(lease_seconds=0.6, renew_seconds=0.1)


def killed(lock: WriterLock) -> None:
    """What kill -9 leaves: the lock document, no renewals, no release."""
    lock._stop.set()
    lock._thread.join()


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "out")
    s3 = request.getfixturevalue("moto_s3")
    bucket = "interleaf-lock-test"
    try:
        s3["client"].create_bucket(Bucket=bucket)
    except s3["client"].exceptions.BucketAlreadyOwnedByYou:
        pass
    return f"s3://{bucket}/{tmp_path.name}/out"


def test_a_second_writer_is_refused_naming_the_holder_until_the_first_releases(output):
    with WriterLock(output, "run-A", QUICK, command="python -m flows.crawl --config x"):
        with pytest.raises(OutputLocked) as e:
            WriterLock(output, "run-B", QUICK).acquire()
        msg = str(e.value)
        assert "run-A" in msg and "started" in msg and "expires" in msg
        assert f"python -m flows.lock {output} --clear" in msg
        assert e.value.holder["command"] == "python -m flows.crawl --config x"
        time.sleep(1.0)   # longer than the lease: renewals keep it
        with pytest.raises(OutputLocked):
            WriterLock(output, "run-C", QUICK).acquire()
    assert read_lock(output)["released"] is True
    with WriterLock(output, "run-B", QUICK) as b:
        assert b.taken_over is None   # a released lock is free: nothing to take over
        assert read_lock(output)["holder"] == "run-B"


def test_a_killed_holder_s_lock_expires_and_is_taken_over_and_the_old_holder_cannot_commit(output):
    a = WriterLock(output, "run-A", QUICK).acquire()
    killed(a)
    with pytest.raises(OutputLocked):
        WriterLock(output, "run-B", QUICK).acquire()   # not expired yet
    time.sleep(0.8)
    with WriterLock(output, "run-B", QUICK) as b:
        assert b.taken_over["holder"] == "run-A"
        a.renew()   # the stalled holder wakes up: its lock is gone
        with pytest.raises(LockLost, match="run-B"):
            a.check()
        a.release()   # and releasing does not free run B's lock
        assert read_lock(output)["holder"] == "run-B" and not read_lock(output)["released"]
        b.check()


def test_racing_writers_exactly_one_wins(tmp_path):
    output = str(tmp_path / "out")
    got, start = {}, threading.Barrier(8)

    def contend(i: int) -> None:
        start.wait()
        try:
            got[i] = WriterLock(output, f"run-{i}", QUICK).acquire()
        except OutputLocked:
            got[i] = None

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [lk for lk in got.values() if lk is not None]
    assert len(winners) == 1 and read_lock(output)["holder"] == winners[0].holder
    winners[0].release()


def test_an_unreadable_lock_is_treated_as_expired(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text('{"token": "x", "hold')   # a holder killed while writing it
    with WriterLock(str(out), "run-B", QUICK) as b:
        assert b.taken_over["holder"] == "(unreadable lock)"
        assert json.loads((out / LOCK_FILE).read_text())["holder"] == "run-B"


def test_disabled_lock_writes_nothing(tmp_path):
    with WriterLock(str(tmp_path), "run-A", LockConfig(enabled=False)):
        with WriterLock(str(tmp_path), "run-B", LockConfig(enabled=False)):
            pass
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.parametrize("kwargs, key", [({"lease_seconds": 0}, "lease_seconds"),
                                         ({"renew_seconds": -1}, "renew_seconds"),
                                         ({"lease_seconds": 60, "renew_seconds": 40}, "renew_seconds")])
def test_config_checks(kwargs, key):
    with pytest.raises(ValueError, match=f"lock.{key}"):
        LockConfig(**kwargs)


def test_lock_cli_shows_the_holder_and_clears_it(tmp_path, capsys):
    from flows.lock import main
    out = str(tmp_path / "out")
    assert main([out]) == 0 and "free" in capsys.readouterr().out
    a = WriterLock(out, "run-A", QUICK).acquire()
    killed(a)
    assert main([out]) == 1 and '"holder": "run-A"' in capsys.readouterr().out
    assert main([out, "--clear"]) == 0 and "run-A" in capsys.readouterr().out
    with WriterLock(out, "run-B", QUICK) as b:
        assert b.taken_over is None


def test_crawl_refuses_a_locked_output_with_exit_3_before_reading_anything(tmp_path, capsys):
    from flows.crawl import main
    out = str(tmp_path / "out")
    (tmp_path / "in.warc.gz").write_bytes(b"")
    with WriterLock(out, "nightly-1", QUICK):
        code = main(["--config", str(ROOT / "configs/local.yaml"), "--input", str(tmp_path / "in.warc.gz"),
                     "--output", out])
    err = capsys.readouterr().err
    assert code == 3 and "locked by run nightly-1" in err and "--clear" in err
    assert not (tmp_path / "out" / "_runs").exists() and not (tmp_path / "out" / "_ledger").exists()


def test_a_holder_killed_in_the_middle_of_a_renewal_leaves_its_last_document(tmp_path, monkeypatch):
    """The document is replaced whole (written aside, renamed over): a kill between the two
    leaves the previous one, never an empty file that would read as 'no lock'."""
    import os
    out = str(tmp_path / "out")
    a = WriterLock(out, "run-A", QUICK).acquire()
    killed(a)
    before = read_lock(out)

    def crash(*args):
        raise KeyboardInterrupt("killed between the write and the rename")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        a.renew()
    monkeypatch.undo()
    assert read_lock(out) == before and before["holder"] == "run-A"
