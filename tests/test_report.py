"""The run report (_runs/<run_id>/report.md and its PNG charts): hand-made run records, no Ray;
then one flow test on the sample run."""
from __future__ import annotations

import io
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.report import render_report, write_report
from tests.test_flow import ROOT, sample  # noqa: F401  (module-scoped fixture)

PNG = b"\x89PNG\r\n\x1a\n"
RUN = "20260101T000000Z-abc123"
CLIP_OFF = "images.clip.enabled is false (no CLIP weights configured): no image-text similarity scores"


def op(name: str, errors: list | None = None, **counters) -> dict:
    return {"name": name, "counters": counters, "errors": errors or []}


def record(**changes) -> dict:
    rec = {
        "run_id": RUN, "status": "ok", "failure": None, "started": "2026-01-01T00:00:00+00:00",
        "seconds": 125.5, "inputs": [f"s3://cc/warcs/file-{i:03d}.warc.gz" for i in range(3)],
        "config_hash": "4664afe163c1f320", "pipeline_version": "0.1.0", "files": [],
        "operators": [
            op("read", [{"kind": "warc_damaged", "path": "s3://cc/warcs/file-002.warc.gz", "error": "bad gzip"}],
               files=3, files_failed=1, records=900, dropped=600, dropped_not_response=580, dropped_not_html=20,
               errors_warc_damaged=1, out=300),
            op("extract", **{"in": 300, "out": 300}),
            op("langid", **{"in": 300, "out": 300}),
            op("select", **{"in": 300, "out": 240, "dropped": 60, "dropped_http_status": 17,
                            "dropped_min_word_count": 43, "fails_min_word_count": 50}),
            op("duplicates", **{"in": 300, "out": 230, "dropped": 10, "dropped_duplicate": 9,
                                "dropped_duplicate_url": 1}),
            op("images", image_urls=800, images_removed_failed=12, dropped=2, dropped_nsfw=2),
            op("fetch", [{"kind": "fetch_error", "url": "http://x/a.png", "error": "timeout"}] * 3,
               status_ok=700, status_timeout=60, status_http_error=40, source_warc=500, source_fetch=300,
               urls=800, references=950, errors_fetch_error=55),
            op("score_images", **{"in": 700, "nsfw_scored": 700, "nsfw_over_threshold": 3, "out": 700}),
            op("write", **{"in": 300, "rows_documents": 228, "rows_rejected": 72, "files": 6}),
            op("clip", [{"kind": "clip_off", "reason": CLIP_OFF}], enabled=0),
        ],
        "phases": [{"name": "read+extract", "seconds": 60.0, "documents": 300},
                   {"name": "dedup", "seconds": 20.0, "documents": 240},
                   {"name": "images", "seconds": 40.0, "documents": 230}],
    }
    rec.update(changes)
    return rec


def write_documents(out, run_id: str, languages: list[str | None], part: str = "000000") -> None:
    (out / "documents").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": [str(i) for i in range(len(languages))], "language": languages}),
                   out / "documents" / f"part-{run_id}-{part}.parquet")


def images_of(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


def test_report_of_a_run(tmp_path):
    write_documents(tmp_path, RUN, ["en"] * 5 + ["de"] * 3 + ["ja", None])
    write_documents(tmp_path, "20251231T000000Z-000000", ["fr"] * 7)  # another run's documents: not counted
    path = write_report(str(tmp_path), RUN, record())
    assert path == str(tmp_path / "_runs" / RUN / "report.md")
    md = (tmp_path / "_runs" / RUN / "report.md").read_text()
    assert RUN in md and "**Status: ok**" in md and "2 min 06 s" in md and "4664afe163c1f320" in md
    assert "WARC files read: 3, failed (damaged or unreadable): **1**" in md
    assert "before the run" not in md                    # nothing to roll forward or clean
    assert "`s3://cc/warcs/file-001.warc.gz`" in md
    # failures: kinds with their full counts (from errors_<kind>), and examples
    assert "| read | warc_damaged | 1 |" in md and "| fetch | fetch_error | 55 |" in md
    assert "bad gzip" in md and "clip_off" not in md.split("## Failures")[1].split("##")[0]
    # drops per stage and reason, with counts
    for stage, reason, n in (("select", "http_status", 17), ("select", "min_word_count", 43),
                             ("duplicates", "duplicate", 9), ("duplicates", "duplicate_url", 1),
                             ("images", "nsfw", 2), ("read", "not_html", 20)):
        assert f"| {stage} | {reason} | {n} |" in md
    assert "| select | 300 | 240 | 60 |" in md
    assert "Written: 228 documents (documents/), 72 rejected rows (rejected/), 6 files." in md
    # languages of this run only
    assert "| en | 5 | 50% |" in md and "| de | 3 | 30% |" in md and "| (none) | 1 | 10% |" in md
    assert "| fr |" not in md
    # images
    assert "status: ok 700, timeout 60, http_error 40" in md
    assert "700 images scored, 3 over the threshold; 2 documents dropped as nsfw" in md
    assert "**CLIP: off.**" in md and CLIP_OFF in md
    # throughput per phase
    assert "| read+extract | 60.0 | 300 | 5.0 |" in md and "| dedup | 20.0 | 240 | 12.0 |" in md
    # every chart is a PNG next to the report, linked relatively
    linked = images_of(md)
    assert set(linked) == {"funnel.png", "drops.png", "languages.png", "throughput.png"}
    for name in linked:
        data = (tmp_path / "_runs" / RUN / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000
    assert not list((tmp_path / "_runs" / RUN).glob("*.tmp"))


def test_housekeeping_before_the_run_is_reported():
    rec = record()
    rec["operators"].append(op("housekeeping", commits_rolled_forward=1, abandoned_staging_removed=2,
                               abandoned_staging_files=7, abandoned_staging_bytes=3 * 2**20))
    md, _ = render_report(rec)
    assert ("- before the run: 1 interrupted commit(s) rolled forward; the staging folders of 2 crashed run(s) "
            "removed (7 files, 3.0 MiB)") in md


def test_failed_run_states_the_failure(tmp_path):
    failure = "3 of 3 WARC files damaged or unreadable (more than max_failed_warc_fraction=0.1)"
    ops = [op("read", [{"kind": "warc_unreadable", "path": f"/in/{i}.warc.gz", "error": "No such file"}
                       for i in range(3)], files=3, files_failed=3, records=0, errors_warc_unreadable=3, out=0),
           op("write", **{"in": 0, "files": 0})]
    write_report(str(tmp_path), RUN, record(status="failed", failure=failure, operators=ops, phases=None))
    md = (tmp_path / "_runs" / RUN / "report.md").read_text()
    assert f"**Status: FAILED**: {failure}" in md
    assert f"The run **failed**: {failure}" in md
    assert "| read | warc_unreadable | 3 |" in md and "No such file" in md
    assert "The output holds no documents of this run." in md
    assert "No documents dropped." in md
    for name in images_of(md):
        assert (tmp_path / "_runs" / RUN / name).read_bytes().startswith(PNG)


def test_record_without_phases(tmp_path):
    rec = record()
    del rec["phases"]
    write_report(str(tmp_path), RUN, rec)
    md = (tmp_path / "_runs" / RUN / "report.md").read_text()
    assert "throughput.png" not in md and not (tmp_path / "_runs" / RUN / "throughput.png").exists()
    assert "Overall: 300 HTML pages (900 WARC records) in 2 min 06 s: 2.4 pages/s, 86.1 WARC files/h." in md
    assert "The output holds no documents of this run." in md   # no documents/ at all


def test_many_inputs_are_cut_and_no_image_stage(tmp_path):
    rec = record(inputs=[f"/in/{i}.warc.gz" for i in range(25)],
                 operators=[o for o in record()["operators"] if o["name"] not in ("fetch", "score_images", "clip")
                            and o["name"] != "images"])
    md, charts = render_report(rec, {"en": 1})
    assert "`/in/19.warc.gz`" in md and "`/in/20.warc.gz`" not in md and "... and 5 more" in md
    assert "## Images" not in md
    assert set(charts) == set(images_of(md))


def test_clip_on_and_selection_off():
    ops = [op("select", **{"in": 10, "would_drop_http_status": 2, "out": 10}),
           op("clip", **{"in": 10, "images_scored": 30, "images_removed_clip": 4, "dropped": 1,
                         "dropped_too_few_images": 1, "out": 9})]
    md, _ = render_report(record(operators=ops), {})
    assert "CLIP: on; 30 images scored against their text, 4 removed under the similarity threshold" in md
    assert "| select | http_status (would drop; selection off) | 2 |" in md
    assert "| clip | too_few_images | 1 |" in md


def test_retry_record(tmp_path):
    rec = {"run_id": RUN, "kind": "retry_images", "status": "ok", "started": "2026-01-02T00:00:00+00:00",
           "seconds": 12.0, "retried_runs": ["20251231T000000Z-000000"], "statuses": ["timeout", "not_fetched"],
           "document_files_checked": 4, "document_files_rewritten": ["documents/part-x-000001.parquet"],
           "retryable_images": 5, "now_ok": 3, "files": [],
           "operators": [op("fetch", status_ok=3, status_timeout=2, urls=5, references=5)]}
    path = write_report(str(tmp_path), RUN, rec)
    md = (tmp_path / "_runs" / RUN / "report.md").read_text()
    assert path.endswith(f"_runs/{RUN}/report.md")
    assert "# Retry of failed images" in md and "**Status: ok**" in md
    assert "runs retried: 20251231T000000Z-000000" in md and "statuses retried: timeout, not_fetched" in md
    assert "retryable images: 5, now ok: 3" in md and "`documents/part-x-000001.parquet`" in md
    assert "status: ok 3, timeout 2" in md
    assert "## Languages" not in md


def test_report_on_s3(moto_s3):
    client = moto_s3["client"]
    client.create_bucket(Bucket="reports")
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": ["a", "b", "c"], "language": ["en", "en", "de"]}), buf)
    client.put_object(Bucket="reports", Key=f"out/documents/part-{RUN}-000000.parquet", Body=buf.getvalue())
    path = write_report("s3://reports/out", RUN, record())
    assert path == f"s3://reports/out/_runs/{RUN}/report.md"
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="reports", Prefix=f"out/_runs/{RUN}/")["Contents"]
            if not o["Key"].endswith("/")}  # pyarrow's directory markers
    md = client.get_object(Bucket="reports", Key=f"out/_runs/{RUN}/report.md")["Body"].read().decode()
    assert "| en | 2 | 67% |" in md and "| de | 1 | 33% |" in md
    linked = images_of(md)
    assert linked and keys == {f"out/_runs/{RUN}/{n}" for n in ["report.md", *linked]}  # no temp files left
    for name in linked:
        body = client.get_object(Bucket="reports", Key=f"out/_runs/{RUN}/{name}")["Body"].read()
        assert body.startswith(PNG)


@pytest.mark.ray
def test_report_of_the_sample_run(ray_local, sample, tmp_path):  # noqa: F811
    from flows.crawl import run
    from flows.config import load_config

    warc, _ = sample
    cfg = load_config(ROOT / "configs/local.yaml", [], input=[str(warc)], output=str(tmp_path))
    res = run(cfg, [str(warc)])
    rec = json.loads((tmp_path / "_runs" / res.run_id / "stats.json").read_text())
    path = write_report(str(tmp_path), res.run_id, rec)
    md = (tmp_path / "_runs" / res.run_id / "report.md").read_text()
    assert path == str(tmp_path / "_runs" / res.run_id / "report.md")
    assert "**Status: ok**" in md and str(warc) in md
    langs = dict(re.findall(r"^\| ([a-z]{2}) \| (\d+) \|", md.split("## Languages")[1], re.M))
    assert {"en", "de", "fr", "ja", "ru", "ar"} <= set(langs) and int(langs["en"]) >= 2
    assert "| select | http_status | 1 |" in md and "| duplicates | duplicate | 1 |" in md
    assert "**CLIP: off.**" in md
    for name in images_of(md):
        assert (tmp_path / "_runs" / res.run_id / name).read_bytes().startswith(PNG)
    assert {"funnel.png", "drops.png", "languages.png"} <= set(images_of(md))

