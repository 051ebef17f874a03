"""The ledger (operators/io/ledger.py) without Ray: per-file outcomes, states, what is pending."""
import json

import pytest

from operators.io.ledger import (LedgerConfig, entries, finished, pending, read_ledger,
                              stage_entries, units)
from operators.io.read import ReadResult
from operators.io.writer import commit


def read(path: str, records: int, *kinds: str) -> ReadResult:
    return ReadResult(path, records, list(kinds))


def test_entry_states_and_attempts():
    outcomes = {"a": read("a", 5), "b": read("b", 0, "unreadable_warc"),
                "c": read("c", 3, "damaged_warc")}
    errors = [{"kind": "unreadable_warc", "file": "b", "error": "No such file"}]
    rows = {r["warc"]: r for r in entries(["a", "b", "c", "d"], outcomes, {"a": [4, 1], "c": [2, 0]}, errors,
                                          {"b": {"attempts": 1}}, "r1", "inv")}
    assert (rows["a"]["state"], rows["a"]["documents"], rows["a"]["rejected"], rows["a"]["error"]) == ("done", 4, 1, None)
    assert (rows["b"]["state"], rows["b"]["attempts"]) == ("failed", 2)
    assert rows["b"]["error"] == "unreadable_warc: No such file"
    assert (rows["c"]["state"], rows["c"]["errors"]) == ("done", ["damaged_warc"])   # damage: not retried
    assert rows["d"]["state"] == "failed"                                               # nothing reported
    unit = entries(["a"], {}, {}, [], {}, "r2", "inv", unit_error="RayTaskError: boom")
    assert (unit[0]["state"], unit[0]["error"]) == ("failed", "RayTaskError: boom")


def test_pending_and_units():
    cfg = LedgerConfig(max_attempts=2, warcs_per_commit=2)
    ledger = {"a": {"state": "done"}, "b": {"state": "failed", "attempts": 1}, "c": {"state": "failed", "attempts": 2}}
    assert not finished(None, cfg) and finished(ledger["a"], cfg) and not finished(ledger["b"], cfg)
    assert finished(ledger["c"], cfg)
    assert pending(["e", "a", "b", "c", "d"], ledger, cfg) == ["e", "b", "d"]   # input order kept
    assert pending(["e", "a", "b", "c", "d"], ledger, LedgerConfig(max_attempts=2, max_warcs=2)) == ["e", "b"]
    assert units(["1", "2", "3"], cfg) == [["1", "2"], ["3"]]


@pytest.mark.parametrize("kwargs,key", [({"warcs_per_commit": 0}, "ledger.warcs_per_commit"),
                                        ({"max_attempts": True}, "ledger.max_attempts"),
                                        ({"max_warcs": 0}, "ledger.max_warcs")])
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        LedgerConfig(**kwargs)


def test_entries_become_visible_with_their_commit(tmp_path):
    out = str(tmp_path)
    rows = entries(["a"], {"a": read("a", 1)}, {}, [], {}, "run1", "run1")
    staged = stage_entries(out, "run1", rows)
    assert read_ledger(out) == {}                 # staged only
    assert commit(out, "run1", [staged]) == ["_ledger/run1.jsonl"]
    assert read_ledger(out)["a"]["state"] == "done"
    later = entries(["a"], {"a": read("a", 0, "unreadable_warc")}, {}, [], read_ledger(out),
                    "run2", "run2")
    commit(out, "run2", [stage_entries(out, "run2", later)])
    got = read_ledger(out)["a"]                   # the latest entry wins
    assert (got["state"], got["attempts"], got["run_id"]) == ("failed", 2, "run2")
    assert json.loads((tmp_path / "_ledger/run1.jsonl").read_text().splitlines()[0])["warc"] == "a"


def test_ledger_summary_cli(tmp_path, capsys):
    from flows.ledger import main, summary
    out = str(tmp_path)
    rows = entries(["a", "b", "c"], {"a": read("a", 3), "b": read("b", 0, "unreadable_warc"),
                                     "c": read("c", 2, "damaged_warc")},
                   {"a": [2, 1], "c": [1, 0]}, [{"kind": "unreadable_warc", "file": "b", "error": "timeout"}],
                   {"b": {"attempts": 2}}, "r1", "r1")
    commit(out, "r1", [stage_entries(out, "r1", rows)])
    s = summary(out, LedgerConfig(max_attempts=3), inputs=["a", "b", "c", "d"])
    assert (s["done"], s["done_with_errors"], s["given_up"], s["documents"], s["rejected"]) == (2, 1, 1, 3, 1)
    assert s["inputs_to_do"] == 1 and s["failed"] == [{"warc": "b", "attempts": 3, "error": "unreadable_warc: timeout",
                                                     "given_up": True}]
    assert main([out, "--failed"]) == 0
    printed = capsys.readouterr().out
    assert "GIVEN UP b (attempts 3): unreadable_warc: timeout" in printed and "3 documents" in printed
    assert main([str(tmp_path / "none"), "--json"]) == 0   # an output without a ledger: zeros


def test_latest_entry_by_time_when_run_ids_share_a_second(tmp_path):
    """Run ids order to the second with a random suffix: of two runs ending in one second the
    later may sort first. The entry written later wins all the same (a retried file's attempts
    count up; this made test_flow_ledger's retry test flaky)."""
    out = str(tmp_path)
    first = entries(["a"], {"a": read("a", 0, "unreadable_warc")}, {}, [], {}, "20261203T003834Z-ffffff", "i")
    commit(out, "20261203T003834Z-ffffff", [stage_entries(out, "20261203T003834Z-ffffff", first)])
    second = entries(["a"], {"a": read("a", 0, "unreadable_warc")}, {}, [], read_ledger(out),
                     "20261203T003834Z-000000", "i")
    commit(out, "20261203T003834Z-000000", [stage_entries(out, "20261203T003834Z-000000", second)])
    got = read_ledger(out)["a"]
    assert (got["attempts"], got["run_id"]) == (2, "20261203T003834Z-000000")
    # entries without a time (written by hand) follow file order
    (tmp_path / "_ledger/zz.jsonl").write_text(json.dumps({"warc": "a", "state": "done"}) + "\n")
    assert read_ledger(out)["a"]["state"] == "done"
