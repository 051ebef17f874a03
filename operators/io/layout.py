"""Where everything lives in an output folder: one module for every producer's folder, so the
writer's commit, the dedup index, the ledger and the readers agree without importing each other.

    <output>/documents/, rejected/             the corpus and the rows selection dropped (`TABLES`)
    <output>/images/, image_embeddings/        stored image copies and CLIP embeddings (`EXTRA_TABLES`)
    <output>/_ledger/<run_id>.jsonl            each WARC's state (operators/io/ledger.py)
    <output>/_index/<docs|images|superseded|probe>/   the dedup index (operators/dedup/index.py)
    <output>/_index/_committed/<run_id>.json   a committed run's manifest
    <output>/_runs/<run_id>/                   a run's record, report, config, commit intent
    <output>/_runs/<run_id>/_staging/          its staged files until the commit moves them
"""
from __future__ import annotations

import posixpath

TABLES = ("documents", "rejected")
EXTRA_TABLES = ("images", "image_embeddings")   # staged by the image stage (content-addressed by sha256)
LEDGER_DIR = "_ledger"
RUNS_DIR = "_runs"
INDEX_DIR = "_index"
COMMITTED_DIR = posixpath.join(INDEX_DIR, "_committed")
INDEX_TABLES = ("docs", "images", "superseded")   # the index's Parquet tables (schemas: operators/dedup/index.py)
INDEX_PROBE = "probe"                              # its probe parts (operators/dedup/probe.py), not Parquet
INDEX_FOLDERS = (*INDEX_TABLES, INDEX_PROBE)


def run_dir(output: str, run_id: str) -> str:
    return posixpath.join(output.rstrip("/"), RUNS_DIR, run_id)


def staging_dir(output: str, run_id: str) -> str:
    return posixpath.join(run_dir(output, run_id), "_staging")


def intent_path(run_id: str) -> str:
    """The commit intent of a run, relative to the output root."""
    return posixpath.join(RUNS_DIR, run_id, "commit.json")


def manifest_path(run_id: str) -> str:
    """The manifest of a committed run, relative to the output root."""
    return posixpath.join(COMMITTED_DIR, f"{run_id}.json")
