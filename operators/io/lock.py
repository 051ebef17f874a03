"""One writer per output: a lease lock at `<output>/_lock.json` (local folder or S3).

    with WriterLock(output, holder=run_id, config=LockConfig()):
        ...   # recover, run, commit
    python -m flows.lock OUTPUT            # who holds it
    python -m flows.lock OUTPUT --clear    # remove a lock (after making sure its run is gone)

A run takes the lock before it touches the output (before `recover`) and gives it back at the
end. A second run (a cron overlap, a double `ray job submit`) refuses at start with
`OutputLocked`, naming the holder, its host and process, when it started and how to clear it.

The lock is a lease: its holder renews it every `renew_seconds` from a thread; a holder killed
with -9 stops renewing and its lock expires `lease_seconds` after the last renewal, when the next
run takes it over (logged, with the dead holder's name) - so a killed run never blocks the next
night for good. A holder whose lock was taken over (it stalled longer than the lease) notices at
its next renewal or check, and `check()` raises `LockLost` before it commits anything.

Atomicity. Every change is a compare-and-swap on the lock document: locally under an exclusive
`flock` of the output folder, the document replaced whole by a rename (POSIX filesystems; one
machine), on S3 by conditional writes
(`If-None-Match: *` to create, `If-Match: <ETag>` to renew, take over or release), which S3 and
S3-compatible stores that implement them (moto, MinIO) honour. Each write is read back and its
token compared, so a store that ignores the conditions still catches all but a narrow race.
A released lock stays as a document with `"released": true` (S3 needs no conditional delete).
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from operators.io.storage import is_uri, resolve

log = logging.getLogger("interleaf")

LOCK_FILE = "_lock.json"


@dataclass(frozen=True)
class LockConfig:
    enabled: bool = True
    lease_seconds: float = 600.0   # a killed holder's lock expires this long after its last renewal
    renew_seconds: float = 60.0    # how often a live holder renews

    def __post_init__(self):
        for k in ("lease_seconds", "renew_seconds"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"lock.{k} must be a number > 0, got {v!r}")
        if self.renew_seconds * 2 > self.lease_seconds:
            raise ValueError(f"lock.renew_seconds ({self.renew_seconds}) must be at most half of "
                             f"lock.lease_seconds ({self.lease_seconds})")


class OutputLocked(RuntimeError):
    """Another run holds the output's lock."""

    def __init__(self, output: str, holder: dict):
        self.holder = holder
        expires = _iso(holder.get("expires", 0))
        super().__init__(
            f"{output} is locked by run {holder.get('holder')} (host {holder.get('host')}, pid "
            f"{holder.get('pid')}, started {holder.get('started')}, lease renewed {holder.get('renewed')}, "
            f"expires {expires} unless renewed). Another run is writing this output: wait for it. "
            f"If that run is gone (killed, its machine lost), the lock expires by itself at {expires}; "
            f"to clear it now: python -m flows.lock {output} --clear")


class LockLost(RuntimeError):
    """This run's lock was taken over (it stalled longer than the lease): it must not commit."""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- stores (compare-and-swap)

class _LocalStore:
    """The lock document in a local folder: changes under an exclusive `flock` of the folder
    itself, each written whole (a temporary file renamed over it), so that a holder killed in the
    middle of a renewal leaves the old document, never an empty one."""

    def __init__(self, root: str):
        self.root = root
        self.path = os.path.join(root, LOCK_FILE)

    @contextmanager
    def transaction(self):
        import fcntl
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)   # closing drops the flock

    def read(self) -> tuple[dict | None, object]:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None, None
        return _parse(raw, self.path), raw

    def write(self, doc: dict, version: object) -> bool:
        # under the flock nobody else changed it since read(): `version` is what read() saw
        tmp = f"{self.path}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(json.dumps(doc, indent=2).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return True

    def clear(self) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


class _S3Store:
    def __init__(self, root: str):
        bucket, _, prefix = root.partition("/")
        self.bucket, self.key = bucket, posixpath.join(prefix, LOCK_FILE) if prefix else LOCK_FILE
        try:
            import boto3
            self.client = boto3.client("s3")
        except ImportError:   # best effort: pyarrow writes, read back; a narrow race remains
            self.client = None
            log.warning("boto3 is not installed: the S3 writer lock cannot use conditional writes "
                        "(pip install boto3); it falls back to write-and-read-back")
        self.fs = resolve(f"s3://{root}")[0]

    @contextmanager
    def transaction(self):
        yield

    def read(self) -> tuple[dict | None, object]:
        if self.client is None:
            try:
                with self.fs.open_input_stream(f"{self.bucket}/{self.key}") as f:
                    raw = f.read()
            except FileNotFoundError:
                return None, None
            return _parse(raw, self.key), raw
        from botocore.exceptions import ClientError
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise
        return _parse(got["Body"].read(), self.key), got["ETag"]

    def write(self, doc: dict, version: object) -> bool:
        data = json.dumps(doc, indent=2).encode()
        if self.client is None:
            with self.fs.open_output_stream(f"{self.bucket}/{self.key}") as f:
                f.write(data)
        else:
            from botocore.exceptions import ClientError
            cond = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **cond)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise
        now, _ = self.read()   # read back: a store that ignores the conditions is caught here
        return bool(now) and now.get("token") == doc["token"] and now.get("renewed_at") == doc["renewed_at"]

    def clear(self) -> None:
        try:
            self.fs.delete_file(f"{self.bucket}/{self.key}")
        except FileNotFoundError:
            pass


def _parse(raw: bytes, where: str) -> dict | None:
    if not raw:
        return None
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict) and "token" in doc and "expires" in doc:
            return doc
    except ValueError:
        pass
    log.warning("the writer lock %s is unreadable (a holder killed while writing it?): treated as expired",
                where)
    return {"token": None, "holder": "(unreadable lock)", "expires": 0}


def store_for(output: str):
    fs, root = resolve(output)
    if not is_uri(output) or output.startswith("file://"):
        return _LocalStore(root)
    if type(fs).__name__ == "S3FileSystem":
        return _S3Store(root.rstrip("/"))
    raise ValueError(f"{output}: no writer lock for this filesystem ({type(fs).__name__}); "
                     f"set lock.enabled=false if only one run writes it")


def read_lock(output: str) -> dict | None:
    """The output's lock document (None when there is none)."""
    store = store_for(output)
    with store.transaction():
        return store.read()[0]


def clear_lock(output: str) -> dict | None:
    """Remove the output's lock whoever holds it; returns what it was."""
    store = store_for(output)
    with store.transaction():
        doc = store.read()[0]
        store.clear()
    return doc


# ---------------------------------------------------------------- the lock

class WriterLock:
    """The output's writer lock for one run (`holder`: its run id), as a context manager."""

    def __init__(self, output: str, holder: str, config: LockConfig = LockConfig(), command: str = ""):
        self.output, self.holder, self.config = output, holder, config
        self.command = command
        self.token = uuid.uuid4().hex
        self.store = store_for(output) if config.enabled else None
        self.started = _iso(time.time())
        self.taken_over: dict | None = None   # the stale lock this run replaced
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _doc(self, released: bool = False) -> dict:
        now = time.time()
        return {"token": self.token, "holder": self.holder, "host": socket.gethostname(), "pid": os.getpid(),
                "command": self.command[:500], "started": self.started, "renewed": _iso(now),
                "renewed_at": now, "expires": now + self.config.lease_seconds, "released": released}

    def acquire(self) -> WriterLock:
        if self.store is None:
            return self
        for _ in range(3):
            with self.store.transaction():
                cur, version = self.store.read()
                live = cur is not None and not cur.get("released") and cur.get("expires", 0) > time.time()
                if live and cur.get("token") != self.token:
                    raise OutputLocked(self.output, cur)
                stale = cur if cur is not None and not cur.get("released") and not live else None
                if self.store.write(self._doc(), version):
                    if stale is not None:
                        self.taken_over = stale
                        log.warning("took over the writer lock of run %s (host %s, pid %s): it expired at %s "
                                    "without being renewed (killed?)", stale.get("holder"), stale.get("host"),
                                    stale.get("pid"), _iso(stale.get("expires", 0)))
                    break
        else:   # lost the race three times: someone else holds it now
            raise OutputLocked(self.output, read_lock(self.output) or {"holder": "(unknown)"})
        self._thread = threading.Thread(target=self._renew_loop, name="writer-lock", daemon=True)
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.config.renew_seconds):
            try:
                self.renew()
            except Exception as e:  # noqa: BLE001 - a store hiccup: the next renewal tries again
                log.warning("writer lock renewal failed (retried in %.0f s): %s", self.config.renew_seconds, e)
            if self.lost:
                return

    def renew(self) -> None:
        """Extend the lease (the thread does this); marks the lock lost when another run has it."""
        if self.store is None or self.lost:
            return
        with self.store.transaction():
            cur, version = self.store.read()
            if cur is None or cur.get("token") != self.token:
                self.lost = f"the lock is now held by run {(cur or {}).get('holder')}"
            elif not self.store.write(self._doc(), version):
                self.lost = "the lock changed while it was being renewed"
        if self.lost:
            log.error("writer lock of %s lost: %s; this run will not commit", self.output, self.lost)

    def check(self) -> None:
        """Raise LockLost unless this run still holds the lock (call before committing)."""
        if self.lost:
            raise LockLost(f"{self.output}: {self.lost} (this run stalled longer than lock.lease_seconds="
                           f"{self.config.lease_seconds}); nothing of it was committed after that")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.store is None or self.lost:
            return
        try:
            with self.store.transaction():
                cur, version = self.store.read()
                if cur is not None and cur.get("token") == self.token:
                    self.store.write(self._doc(released=True), version)
        except Exception as e:  # noqa: BLE001 - the lease expires by itself
            log.warning("writer lock of %s not released (it expires in %.0f s): %s", self.output,
                        self.config.lease_seconds, e)

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
