"""MinHash near-duplicate detection: precision/recall on planted near-duplicates, and signature speed.

    # input: the shared ground-truth pages (already made on the dev machines):
    python ../shared/tools/pages_to_warc.py --data-root ../shared/data --out /tmp/gt
    .venv/bin/python bench/dedup_benchmark.py                       # defaults, ~10k documents
    .venv/bin/python bench/dedup_benchmark.py --variants 12 --mixes 2000 --hash words64 --no-datatrove

Corpus (all from the `text` of /tmp/gt/*.truth.jsonl, seeded):
  originals  every ground-truth text with >= --min-words words, minus any whose exact 5-gram
             Jaccard with an earlier original is >= 0.5 (so groups are independent)
  variants   --variants edited copies per original, each one edit kind at a random strength:
             insert / delete / substitute words (a share of the words), reorder paragraphs (swaps),
             boilerplate (lines added or replaced at the start and end), or a mix of these
  mixes      --mixes unrelated documents, each one paragraph from each of 8 random originals
A pair is *planted* when both documents come from the same original (all pairs inside a group,
variants among themselves included). Exact shingle Jaccard is computed for every planted pair and
every candidate pair; a pair is *true at t* when its exact J >= t. Pairs neither planted nor
candidates are assumed below 0.5 (originals are deduplicated at 0.5; a random sample of them is
checked and reported).
  detected (LSH)       the two documents share at least one band key
  detected + verified  ... and the signature estimate of J >= t
  production path      what the flow does (operators/dedup/clusters.py, in one in-memory block): band
                       buckets -> `bucket_edges` (every pair of a bucket of <= ALL_PAIRS_MAX ids, a
                       star above; exact-text buckets verified), then `document_rows` /
                       `candidate_rows` / `attach_src` / `verify_pairs`: exact Jaccard on the sorted
                       distinct 32-bit shingle hashes >= t. The ground truth uses the shingle strings;
                       the two differ only by 32-bit hash collisions (counted and reported).
Clusters: connected components of the production path's verified edges (`tests/dedup_reference.components`), the
kept document by the keep rule (`tests/dedup_reference.choose_kept`: most text, then smallest id). Purity = sum
over clusters of the largest number of members from one planted group / clustered documents; a
planted group is split when its clustered members lie in more than one cluster; chaining = members
whose exact J to their cluster's kept document is below t. The components of the exact graph (all
pairs with exact J >= t) are given beside them as the reference.
Ray (skip with --no-ray): `flows.ray_ops.duplicate_clusters` on the same documents (ray.init
(num_cpus=2), --ray-blocks input blocks, num_partitions=4), wall clock with verification
(threshold 0.8) and without (threshold None), after a small warm-up run that starts the workers.
Speed: CPU seconds of this process (time.process_time: per core), signatures + band keys in
batches of --batch documents; datatrove's `MinhashDedupSignature` (same n-gram size, buckets and
hashes per bucket, its default xxhash-64 (and sha1-32) and text normalisation, our word tokeniser
plugged in because its default NLTK tokeniser needs the punkt data downloaded) on the same texts.
datatrove end to end (skip with --no-datatrove-e2e): its stages 1-4 (MinhashDedupSignature ->
MinhashDedupBuckets, one run per bucket -> MinhashDedupCluster -> MinhashDedupFilter) in this
process on a temp folder, CPU and wall seconds per stage next to ours, and its clusters scored
against exact J >= 0.8 beside ours (pair precision / recall over same-cluster pairs, documents
removed, removed documents with no J >= t partner in their cluster).
"""
from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import operators.dedup.minhash as mh  # noqa: E402
from operators.dedup import clusters as dedup  # noqa: E402
from operators.dedup import verify as verification  # noqa: E402
from tests import dedup_reference as reference  # noqa: E402
from operators.dedup.minhash import MinHashConfig, band_keys, hashed_batch, shingles, signatures_from_hashes  # noqa: E402
from operators.text.quality import words  # noqa: E402
from operators.stats import Stats  # noqa: E402

BOILER_HEAD = ["Home | About us | Contact | Login", "Skip to main content", "Menu Search Subscribe",
               "You are here: Home > News > Article", "Share this: Facebook Twitter Email Print"]
BOILER_TAIL = ["Copyright 2024 All rights reserved. Privacy policy | Terms of use",
               "This website uses cookies to improve your experience. Accept Read more",
               "Related posts: Top ten tips for the summer holidays", "Follow us on Instagram and YouTube",
               "Posted in Uncategorized | Leave a comment", "Powered by WordPress | Theme by Example"]
KINDS = ["insert", "delete", "substitute", "reorder", "boilerplate", "mix"]
STRENGTHS = [0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06]   # share of words edited
THRESHOLDS = (0.8, 0.9)


# ---------------------------------------------------------------------------------------------
# corpus

def load_texts(gt: str, min_words: int) -> list[str]:
    out = []
    for path in sorted(glob.glob(f"{gt}/*.truth.jsonl")):
        for line in open(path, encoding="utf8"):
            t = json.loads(line).get("text") or ""
            if len(words(t)) >= min_words:
                out.append(t)
    return out


def edit_words(text: str, kind: str, share: float, rng: random.Random, vocab: list[str]) -> str:
    """Word edits inside lines (line breaks kept): each word is edited with probability `share`."""
    lines = []
    for line in text.split("\n"):
        ws, out = line.split(" "), []
        for w in ws:
            if rng.random() >= share:
                out.append(w)
            elif kind == "insert":
                out += [w, rng.choice(vocab)]
            elif kind == "substitute":
                out.append(rng.choice(vocab))
            # delete: drop it
        lines.append(" ".join(out))
    return "\n".join(lines)


def make_variant(text: str, kind: str, share: float, rng: random.Random, vocab: list[str]) -> str:
    if kind in ("insert", "delete", "substitute"):
        return edit_words(text, kind, share, rng, vocab)
    paras = text.split("\n")
    if kind == "reorder":
        for _ in range(max(1, round(share * 100))):         # 0.2 .. 6 swaps per 1% of words
            i, j = rng.randrange(len(paras)), rng.randrange(len(paras))
            paras[i], paras[j] = paras[j], paras[i]
        return "\n".join(paras)
    if kind == "boilerplate":
        n_words = max(1, len(text.split()))
        want = max(3, round(share * 5 * n_words))            # about as many shingles as `share` edits
        head, tail = [], []
        while sum(len(x.split()) for x in head + tail) < want:
            (head if rng.random() < 0.5 else tail).append(rng.choice(BOILER_HEAD if not head else BOILER_TAIL))
        if rng.random() < 0.5 and len(paras) > 4:            # replace the first/last line instead of adding
            paras = paras[1:-1]
        return "\n".join(head + paras + tail)
    # mix: half the strength as word edits of each kind, plus a swap and a boilerplate line
    t = text
    for k in ("insert", "delete", "substitute"):
        t = edit_words(t, k, share / 3, rng, vocab)
    t = make_variant(t, "reorder", 0.01, rng, vocab)
    return t + "\n" + rng.choice(BOILER_TAIL)


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def build_corpus(texts: list[str], variants: int, mixes: int, seed: int):
    rng = random.Random(seed)
    # deduplicate originals at J >= 0.5
    sets, originals = [], []
    for t in texts:
        s = set(shingles(t, 5))
        if all(jaccard(s, o) < 0.5 for o in sets):
            sets.append(s)
            originals.append(t)
    vocab = sorted({w for t in originals for w in t.split()})
    docs, group, kinds, shares = [], [], [], []
    for g, t in enumerate(originals):
        docs.append(t); group.append(g); kinds.append("original"); shares.append(0.0)
        for v in range(variants):
            kind = KINDS[(g + v) % len(KINDS)]
            share = rng.choice(STRENGTHS)
            docs.append(make_variant(t, kind, share, rng, vocab)); group.append(g)
            kinds.append(kind); shares.append(share)
    paras = [[p for p in t.split("\n") if len(p.split()) >= 5] for t in originals]
    for m in range(mixes):
        picks = rng.sample(range(len(originals)), 8)
        docs.append("\n".join(rng.choice(paras[p]) if paras[p] else originals[p][:200] for p in picks))
        group.append(-1 - m); kinds.append("mix-unrelated"); shares.append(0.0)
    order = list(range(len(docs)))
    rng.shuffle(order)                                       # no locality for the banding to exploit
    return ([docs[i] for i in order], np.array([group[i] for i in order]),
            [kinds[i] for i in order], [shares[i] for i in order], len(originals))


# ---------------------------------------------------------------------------------------------
# detection

def candidate_pairs(keys: np.ndarray) -> np.ndarray:
    """Pairs (i < j) sharing a band key, as int64 codes i * n + j (unique, sorted)."""
    n = len(keys)
    out = []
    for b in range(keys.shape[1]):
        col = keys[:, b]
        order = np.argsort(col, kind="stable")
        sk = col[order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        sizes = np.diff(np.r_[starts, n])
        for s, z in zip(starts[sizes > 1], sizes[sizes > 1]):
            idx = np.sort(order[s:s + z])
            i, j = np.triu_indices(z, 1)
            out.append(idx[i] * n + idx[j])
    return np.unique(np.concatenate(out)) if out else np.zeros(0, np.int64)


def timed(fn, *a):
    c0, w0 = time.process_time(), time.perf_counter()
    r = fn(*a)
    return r, time.process_time() - c0, time.perf_counter() - w0


def our_signatures(texts: list[str], cfg: MinHashConfig, batch: int):
    mh._WORD_HASHES.clear()                                  # words64: start with a cold memo
    sigs, keys = [], []
    for lo in range(0, len(texts), batch):
        h, c = hashed_batch(texts[lo:lo + batch], cfg)
        s = signatures_from_hashes(h, c, cfg)
        sigs.append(s)
        keys.append(band_keys(s, cfg))
    return np.concatenate(sigs), np.concatenate(keys), None


def datatrove_signatures(texts: list[str], cfg: MinHashConfig, hash_fc: str = "xxhash", precision: int = 64):
    """Compute part of datatrove's stage 1 per document (get_shingles + get_signature)."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Words(WordTokenizer):
        def word_tokenize(self, text):
            return words(text)

        def sent_tokenize(self, text):
            return text.split("\n")

        def span_tokenize(self, text):
            raise NotImplementedError

    dcfg = MinhashConfig(n_grams=cfg.ngram, num_buckets=cfg.bands, hashes_per_bucket=cfg.rows, seed=cfg.seed,
                         hash_config=HashConfig(precision=precision, hash_fc=hash_fc))
    step = MinhashDedupSignature(tempfile.mkdtemp(prefix="dt_sig_"), config=dcfg, language=Words("en"))
    if hash_fc == "xxhash":
        # datatrove 0.10.1 passes str to xxhash.xxh64_intdigest, which xxhash >= 4 refuses
        # ("Strings must be encoded before hashing"): encode first, as xxhash 3 did inside
        import xxhash
        f = xxhash.xxh64_intdigest if precision == 64 else xxhash.xxh32_intdigest
        step._hash_func = lambda s: f(s.encode("utf8"))

    def run():
        n = 0
        for t in texts:
            sh = step.get_shingles(t)
            if sh.size:
                step.get_signature(sh)
                n += 1
        return n
    return step, dcfg, run


def datatrove_full_stage(texts: list[str], step) -> None:
    """datatrove's whole stage-1 `run` (signatures, bucket files written and sorted)."""
    from datatrove.data import Document
    docs = (Document(text=t, id=str(i)) for i, t in enumerate(texts))
    step.run(docs, rank=0, world_size=1)


def datatrove_e2e(texts: list[str], cfg: MinHashConfig) -> dict:
    """datatrove's whole MinHash dedup pipeline in this process on a temp folder, timed per stage.

    Stage 1 `MinhashDedupSignature.run` (world_size=1) -> stage 2 `MinhashDedupBuckets.run` once per
    bucket (rank b of world_size=num_buckets: the step asserts world_size % num_buckets == 0, so one
    task per bucket is the smallest legal run) -> stage 3 `MinhashDedupCluster.run` (world_size=1,
    save_cluster_id=True) -> stage 4 `MinhashDedupFilter.run` (load_cluster_ids=True) over the same
    documents. Returns per-stage (CPU s, wall s), the .remove ids, doc -> cluster id and kept count.
    """
    import shutil
    import struct

    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter

    step, dcfg, _ = datatrove_signatures(texts, cfg)          # same tokeniser, 5-grams, 20x8, xxhash-64
    sig_dir = step.output_folder.path
    root = tempfile.mkdtemp(prefix="dt_e2e_")
    bkt_dir, rm_dir = f"{root}/buckets", f"{root}/remove"
    times = {}
    try:
        _, c, w = timed(datatrove_full_stage, texts, step)
        times["1 MinhashDedupSignature (signatures, 20 bucket files written + sorted)"] = (c, w)

        def buckets():
            st = MinhashDedupBuckets(input_folder=sig_dir, output_folder=bkt_dir, config=dcfg)
            for b in range(dcfg.num_buckets):
                st.run(None, rank=b, world_size=dcfg.num_buckets)
        _, c, w = timed(buckets)
        times[f"2 MinhashDedupBuckets ({dcfg.num_buckets} runs, rank b of world_size={dcfg.num_buckets})"] = (c, w)

        def cluster():
            MinhashDedupCluster(input_folder=bkt_dir, output_folder=rm_dir, config=dcfg,
                                save_cluster_id=True).run(None, 0, world_size=1)
        _, c, w = timed(cluster)
        times["3 MinhashDedupCluster (union-find over the .dups pairs, world_size=1)"] = (c, w)

        def filt():
            st = MinhashDedupFilter(input_folder=rm_dir, load_cluster_ids=True)
            return sum(1 for _ in st.run((Document(text=t, id=str(i)) for i, t in enumerate(texts)), 0, 1))
        kept, c, w = timed(filt)
        times["4 MinhashDedupFilter (documents streamed through, removed ones dropped)"] = (c, w)

        def read_u32(path, k):
            if not os.path.exists(path):
                return np.zeros((0, k), np.int64)
            b = Path(path).read_bytes()
            return np.frombuffer(b, "<u4").astype(np.int64).reshape(-1, k)
        removed = read_u32(f"{rm_dir}/000000.remove", 1)[:, 0]
        cl = read_u32(f"{rm_dir}/000000.clusters", 2)
        pairs_written = sum(os.path.getsize(f"{bkt_dir}/{f}") for f in os.listdir(bkt_dir)) // struct.calcsize("<4I")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(sig_dir, ignore_errors=True)
    return {"times": times, "removed": removed, "cluster_of": dict(zip(cl[:, 0].tolist(), cl[:, 1].tolist())),
            "kept": kept, "dup_pairs": pairs_written, "dcfg": dcfg}


def clustered_pair_scores(clusters: list[tuple[list[int], int]], all_pairs, exact, sets, n: int, t: float) -> dict:
    """Score a clustering against exact J >= t. clusters: (members, kept member) per cluster of >= 2 docs.

    Pair precision = same-cluster pairs with exact J >= t / all same-cluster pairs; pair recall = true pairs
    (exact J >= t, among the benchmark's pair universe: planted + LSH candidates + production candidates)
    that lie in one cluster / all true pairs. Also: documents removed (all but the kept one), removed documents
    with no exact J >= t partner anywhere in their cluster, and removed documents with exact J < t to the
    cluster's kept document."""
    label = np.full(n, -1, np.int64)
    for ci, (m, _) in enumerate(clusters):
        label[m] = ci
    a, b = all_pairs // n, all_pairs % n
    same = (label[a] >= 0) & (label[a] == label[b])
    true = exact >= t
    j_of = dict(zip(all_pairs.tolist(), exact.tolist()))

    def J(i, j):
        i, j = min(i, j), max(i, j)
        v = j_of.get(i * n + j)
        return jaccard(sets[i], sets[j]) if v is None else v
    total = sum(len(m) * (len(m) - 1) // 2 for m, _ in clusters)
    good = removed = no_partner = low_to_kept = outside = 0
    for m, kept in clusters:
        has = {i: False for i in m}
        for i, j in itertools.combinations(m, 2):
            v = J(i, j)
            outside += (min(i, j) * n + max(i, j)) not in j_of
            if v >= t:
                good += 1
                has[i] = has[j] = True
        for i in m:
            if i != kept:
                removed += 1
                no_partner += not has[i]
                low_to_kept += J(i, kept) < t
    return {"clusters": len(clusters), "clustered": int((label >= 0).sum()), "removed": removed,
            "pairs": total, "outside": outside, "precision": good / max(1, total),
            "recall": int((same & true).sum()) / max(1, int(true.sum())), "true": int(true.sum()),
            "no_partner": no_partner, "low_to_kept": low_to_kept}


# ---------------------------------------------------------------------------------------------
# the production path (operators/dedup/clusters.py block functions, one in-memory block)

def doc_id(i: int) -> str:
    return f"d{i:06d}"                                        # string order = index order


def production_table(docs: list[str], keys: np.ndarray, cfg: MinHashConfig):
    """The columns `duplicate_clusters` reads: id, text_chars, num_images, texts, minhash_bands, text_hash."""
    import pyarrow as pa
    n = len(docs)
    bands = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * cfg.bands),
                                     pa.array(keys.reshape(-1).astype(np.uint64), pa.uint64()))
    return pa.table({
        "id": pa.array([doc_id(i) for i in range(n)], pa.string()),
        "text_chars": pa.array([len(t) for t in docs], pa.int64()),
        "num_images": pa.array(np.zeros(n, np.int64)),
        "texts": pa.array([[t] for t in docs], pa.list_(pa.string())),
        "minhash_bands": bands,
        "text_hash": pa.array([mh.exact_hash([t], []) for t in docs], pa.string()),
    })


def id_codes(src, dst, n: int) -> np.ndarray:
    a = np.array([int(x[1:]) for x in src.to_pylist()], np.int64)
    b = np.array([int(x[1:]) for x in dst.to_pylist()], np.int64)
    return np.minimum(a, b) * n + np.maximum(a, b)


def production_path(table, cfg: MinHashConfig, thresholds):
    """Candidates and verified edges as the flow's block functions compute them."""
    import pyarrow as pa
    st = {name: Stats(name) for name in ("pairs", "buckets", *[f"verify {t}" for t in thresholds])}
    cpu = {}
    c0 = time.process_time()
    pairs = dedup.band_pairs(table, stats=st["pairs"])
    cands = dedup.bucket_edges(pairs, max_bucket=10 ** 9, stats=st["buckets"])
    cpu["keys -> candidates (band_pairs + bucket_edges)"] = time.process_time() - c0
    c0 = time.process_time()
    drows = verification.document_rows(table, cfg)
    cpu["document rows (shingle hashes + signatures)"] = time.process_time() - c0
    c0 = time.process_time()
    v1 = verification.attach_src(pa.concat_tables([verification.candidate_rows(cands), drows]))
    block = pa.concat_tables([v1, drows])
    cpu["attach_src"] = time.process_time() - c0
    edges = {}
    for t in thresholds:
        c0 = time.process_time()
        edges[t] = verification.verify_pairs(block, t, stats=st[f"verify {t}"])
        cpu[f"verify_pairs at {t}"] = time.process_time() - c0
    return cands, edges, drows, st, cpu


def clusters_of(codes: np.ndarray, n: int) -> dict[int, list[int]]:
    """Components (of >= 2 documents) of the edges `codes` (i * n + j): root -> sorted members."""
    labels = reference.components(zip((codes // n).tolist(), (codes % n).tolist()))
    out: dict[int, list[int]] = {}
    for x, r in labels.items():
        out.setdefault(r, []).append(x)
    return {r: sorted(m) for r, m in out.items() if len(m) >= 2}


def cluster_stats(clusters: dict[int, list[int]], group: np.ndarray, docs: list[str], sets, t: float) -> dict:
    from collections import Counter
    clustered = sum(len(m) for m in clusters.values())
    majority = kept_same = mixed = chain_clusters = chain_members = 0
    min_to_kept = 1.0
    where: dict[int, set] = {}
    for r, m in clusters.items():
        kept = int(reference.choose_kept([{"id": doc_id(i), "text_chars": len(docs[i]), "num_images": 0}
                                      for i in m])["id"][1:])
        c = Counter(int(group[i]) for i in m)
        majority += max(c.values())
        kept_same += c[int(group[kept])]
        mixed += len(c) > 1
        for g in c:
            where.setdefault(g, set()).add(r)
        js = [jaccard(sets[i], sets[kept]) for i in m if i != kept]
        low = [j for j in js if j < t]
        chain_clusters += bool(low)
        chain_members += len(low)
        min_to_kept = min([min_to_kept] + js)
    planted_groups = {g for g in where if g >= 0}
    return {"clusters": len(clusters), "clustered": clustered, "removed": clustered - len(clusters),
            "purity": majority / max(1, clustered), "purity_kept": kept_same / max(1, clustered),
            "mixed": mixed, "groups": len(planted_groups),
            "split": sum(len(where[g]) > 1 for g in planted_groups),
            "chain_clusters": chain_clusters, "chain_members": chain_members, "min_to_kept": min_to_kept,
            "sizes": Counter(len(m) for m in clusters.values())}


# ---------------------------------------------------------------------------------------------
# Ray

def ray_dedup(table, cfg: MinHashConfig, blocks: int, partitions: int) -> list[tuple]:
    """Wall clock of `duplicate_clusters` with and without verification; returns rows and assignments."""
    import ray
    root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = root + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    import logging
    ray.init(num_cpus=2, logging_level=logging.WARNING, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    from flows.ray_ops import duplicate_clusters
    try:
        step = -(-table.num_rows // blocks)
        ds = ray.data.from_arrow([table.slice(lo, step) for lo in range(0, table.num_rows, step)])
        warm = ray.data.from_arrow(table.slice(0, 300))
        w0 = time.perf_counter()
        duplicate_clusters(warm, verify=cfg, threshold=0.8, num_partitions=partitions)
        warm_s = time.perf_counter() - w0
        out = []
        for label, thr in (("verified, threshold 0.8", 0.8), ("not verified (threshold None)", None)):
            w0 = time.perf_counter()
            assigned, counts = duplicate_clusters(ds, verify=cfg, threshold=thr, num_partitions=partitions)
            wall = time.perf_counter() - w0
            out.append((label, thr, wall, counts, assigned.to_pandas()))
        return out, warm_s
    finally:
        ray.shutdown()


# ---------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gt", default="/tmp/gt")
    ap.add_argument("--min-words", type=int, default=50)
    ap.add_argument("--variants", type=int, default=12)
    ap.add_argument("--mixes", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--hash", default=MinHashConfig.hash)
    ap.add_argument("--no-datatrove", action="store_true")
    ap.add_argument("--no-datatrove-e2e", action="store_true",
                    help="skip datatrove's whole MinHash pipeline (stages 1-4) end to end")
    ap.add_argument("--no-ray", action="store_true", help="skip the end-to-end dedup on Ray")
    ap.add_argument("--ray-blocks", type=int, default=8, help="input blocks of the Ray dataset")
    ap.add_argument("--ray-partitions", type=int, default=4, help="num_partitions of duplicate_clusters")
    ap.add_argument("--out", help="also write the Markdown report here")
    args = ap.parse_args()
    report: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        report.append(line)

    texts = load_texts(args.gt, args.min_words)
    docs, group, kinds, shares, n_orig = build_corpus(texts, args.variants, args.mixes, args.seed)
    n = len(docs)
    n_words = sum(len(words(t)) for t in docs)
    cfg = MinHashConfig(hash=args.hash)
    say(f"## MinHash near-duplicate benchmark ({n} documents)")
    say()
    say(f"Corpus: {n_orig} originals (of {len(texts)} ground-truth texts with >= {args.min_words} words), "
        f"{args.variants} variants each, {args.mixes} unrelated mixes; {n_words / n:.0f} words/document. "
        f"Config: ngram={cfg.ngram}, num_perm={cfg.num_perm}, bands={cfg.bands}, rows={cfg.rows}, "
        f"hash={cfg.hash}, scheme={cfg.scheme}, seed={cfg.seed}.")
    say()

    # --- detection, end to end in this process
    (sigs, keys, _), c_sig, w_sig = timed(our_signatures, docs, cfg, args.batch)
    cand, c_pairs, w_pairs = timed(candidate_pairs, keys)
    sets = [set(shingles(t, cfg.ngram)) for t in docs]

    planted = []
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group.tolist()):
        if g >= 0:
            members.setdefault(g, []).append(i)
    for idx in members.values():
        for i, j in itertools.combinations(sorted(idx), 2):
            planted.append(i * n + j)
    planted = np.unique(np.array(planted, np.int64))
    # the production path: bucket_edges' candidates, verified by exact Jaccard on shingle hashes
    table = production_table(docs, keys, cfg)
    p_cands, p_edges, drows, p_stats, p_cpu = production_path(table, cfg, THRESHOLDS)
    p_cand_codes = np.unique(id_codes(p_cands["src"], p_cands["dst"], n))
    p_edge_codes = {t: np.unique(id_codes(e["src"], e["dst"], n)) for t, e in p_edges.items()}
    all_pairs = np.union1d(np.union1d(planted, cand), p_cand_codes)
    c0 = time.process_time()
    exact = np.array([jaccard(sets[p // n], sets[p % n]) for p in all_pairs.tolist()])
    c_exact = time.process_time() - c0
    est = (sigs[all_pairs // n] == sigs[all_pairs % n]).mean(axis=1)
    is_cand = np.isin(all_pairs, cand)
    is_planted = np.isin(all_pairs, planted)
    is_pcand = np.isin(all_pairs, p_cand_codes)
    sh_of = dict(zip(drows["k"].to_pylist(), drows["sh"].to_pylist()))
    c0 = time.process_time()
    hash_j = np.array([verification.jaccard(sh_of[doc_id(p // n)], sh_of[doc_id(p % n)]) for p in all_pairs.tolist()])
    c_hash = time.process_time() - c0
    # sample of pairs neither planted nor candidates: how many are actually similar?
    rng = np.random.default_rng(args.seed)
    sample = rng.integers(0, n, (20000, 2))
    sample = sample[sample[:, 0] < sample[:, 1]]
    codes = sample[:, 0] * n + sample[:, 1]
    rest = codes[~np.isin(codes, all_pairs)]
    rest_j = np.array([jaccard(sets[p // n], sets[p % n]) for p in rest.tolist()])

    say("### Pair detection")
    say()
    say("| threshold | true pairs (exact J >= t) | candidates (share a band) | LSH precision | LSH recall "
        "| verified (est. J >= t) | verified precision | verified recall "
        "| verified (est. J >= t - 0.05) | precision | recall |")
    say("|---|---|---|---|---|---|---|---|---|---|---|")
    for t in THRESHOLDS:
        true = exact >= t
        det = is_cand
        ver = is_cand & (est >= t)
        say(f"| J >= {t} | {true.sum()} | {det.sum()} | {(det & true).sum() / max(1, det.sum()):.3f} "
            f"| {(det & true).sum() / max(1, true.sum()):.4f} | {ver.sum()} "
            f"| {(ver & true).sum() / max(1, ver.sum()):.3f} | {(ver & true).sum() / max(1, true.sum()):.4f} "
            f"| {(v2 := is_cand & (est >= t - 0.05)).sum()} | {(v2 & true).sum() / max(1, v2.sum()):.3f} "
            f"| {(v2 & true).sum() / max(1, true.sum()):.4f} |")
    say()
    say(f"Candidates that are not planted pairs: {(is_cand & ~is_planted).sum()} "
        f"(max exact J {exact[is_cand & ~is_planted].max() if (is_cand & ~is_planted).any() else 0:.3f}); "
        f"random other pairs checked: {len(rest)}, max exact J {rest_j.max() if len(rest_j) else 0:.3f}, "
        f">= 0.5: {(rest_j >= 0.5).sum()}. LSH precision counts every candidate below t as a false positive "
        f"(by design the banding also catches pairs a little below t: see the S-curve).")
    say()

    say("### S-curve: share of planted pairs that became candidates, by exact J")
    say()
    say("| exact J | planted pairs | observed P(candidate) | theory 1-(1-J^r)^b at bin middle | mean abs(est - exact) |")
    say("|---|---|---|---|---|")
    edges = [0.0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0001]
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = is_planted & (exact >= lo) & (exact < hi)
        mid = (lo + min(hi, 1.0)) / 2
        say(f"| [{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'} | {m.sum()} "
            f"| {is_cand[m].mean() if m.any() else float('nan'):.3f} | {cfg.candidate_probability(mid):.3f} "
            f"| {np.abs(est[m] - exact[m]).mean() if m.any() else float('nan'):.3f} |")
    say()
    say("Theory for the defaults: " + ", ".join(
        f"P({j}) = {cfg.candidate_probability(j):.3f}" for j in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)))
    say()

    say("### Planted variants by edit kind (variant vs its original)")
    say()
    say("| edit kind | variants | mean exact J | min | max | candidates with original |")
    say("|---|---|---|---|---|---|")
    orig_of = {int(group[i]): i for i in range(n) if kinds[i] == "original"}
    for kind in KINDS:
        idx = [i for i in range(n) if kinds[i] == kind]
        js, hit = [], 0
        for i in idx:
            o = orig_of[int(group[i])]
            a, b = min(i, o), max(i, o)
            k = np.searchsorted(all_pairs, a * n + b)
            js.append(exact[k])
            hit += bool(is_cand[k])
        say(f"| {kind} | {len(idx)} | {np.mean(js):.3f} | {np.min(js):.3f} | {np.max(js):.3f} | {hit / len(idx):.3f} |")
    say()

    # --- production path
    say("### Production path: band buckets -> `bucket_edges` -> exact Jaccard verification")
    say()
    bst = p_stats["buckets"].counters
    say(f"`band_pairs` + `bucket_edges` (max_bucket unlimited, all pairs up to {dedup.ALL_PAIRS_MAX} ids) on the "
        f"{n} documents in one block: {p_cands.num_rows} candidate rows ({bst['buckets']} buckets with >= 2 ids, "
        f"{bst['buckets_text']} of them exact-text, {bst['star_buckets']} band buckets above "
        f"{dedup.ALL_PAIRS_MAX} ids given as stars), {len(p_cand_codes)} distinct pairs "
        f"(LSH candidate pairs: {len(cand)}; LSH pairs missing from them: {(is_cand & ~is_pcand).sum()}). "
        f"Verified with `verify_pairs` (exact Jaccard on sorted distinct 32-bit shingle hashes); the ground "
        f"truth is exact Jaccard on the shingle strings.")
    say()
    say("| threshold | true pairs (exact J >= t) | candidate pairs | verified edges | precision | recall "
        "| false positives | true pairs missed: not a band candidate / dropped by a star bucket / hash J < t |")
    say("|---|---|---|---|---|---|---|---|")
    for t in THRESHOLDS:
        true = exact >= t
        det = np.isin(all_pairs, p_edge_codes[t])
        fn = true & ~det
        say(f"| J >= {t} | {true.sum()} | {len(p_cand_codes)} | {len(p_edge_codes[t])} "
            f"| **{(det & true).sum() / max(1, det.sum()):.4f}** | **{(det & true).sum() / max(1, true.sum()):.4f}** "
            f"| {(det & ~true).sum()} | {(fn & ~is_cand).sum()} / {(fn & is_cand & ~is_pcand).sum()} "
            f"/ {(fn & is_pcand & (hash_j < t)).sum()} |")
    say()
    diff = np.abs(hash_j - exact)
    flips = {t: int(((hash_j >= t) != (exact >= t)).sum()) for t in THRESHOLDS}
    say(f"Hash vs string Jaccard over all {len(all_pairs)} pairs: {(diff > 0).sum()} pairs differ at all, "
        f"max abs difference {diff.max():.2e}; pairs on the other side of t: "
        + ", ".join(f"{flips[t]} at {t}" for t in THRESHOLDS)
        + f" (32-bit collisions of distinct shingles: negligible). Hash J of all pairs: {c_hash:.2f} s CPU.")
    vst = {t: p_stats[f"verify {t}"].counters for t in THRESHOLDS}
    say()
    say("verify_pairs counters: " + "; ".join(
        f"t={t}: " + ", ".join(f"{k} {v}" for k, v in vst[t].items()) for t in THRESHOLDS) + ".")
    say()
    say("CPU seconds of the production block functions (one process, whole corpus in one block): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in p_cpu.items()) + ".")
    say()

    say("### Clusters: connected components of the verified edges")
    say()
    say("Purity = sum over clusters of the largest number of members from one planted group / clustered "
        "documents; kept-purity = share of clustered documents from the kept document's group; mixed = "
        "clusters with members of more than one group; split = planted groups whose clustered members lie "
        "in more than one cluster; chaining = members whose exact J to their cluster's kept document is < t "
        "(edges reach t, but the component is transitive). Reference: components of the exact graph "
        "(every pair with exact J >= t).")
    say()
    say("| graph | clusters | clustered docs | duplicates removed | purity | kept-purity | mixed clusters "
        "| groups clustered | groups split | clusters with chaining | chained members | min J to kept | largest cluster |")
    say("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    cl_prod = {}
    for t in THRESHOLDS:
        for name, codes in ((f"production, t = {t}", p_edge_codes[t]), (f"exact J >= {t}", all_pairs[exact >= t])):
            cl = clusters_of(codes, n)
            if name.startswith("production"):
                cl_prod[t] = cl
            cs = cluster_stats(cl, group, docs, sets, t)
            say(f"| {name} | {cs['clusters']} | {cs['clustered']} | {cs['removed']} | {cs['purity']:.4f} "
                f"| {cs['purity_kept']:.4f} | {cs['mixed']} | {cs['groups']} | {cs['split']} | {cs['chain_clusters']} "
                f"| {cs['chain_members']} | {cs['min_to_kept']:.3f} | {max(cs['sizes']) if cs['sizes'] else 0} |")
    say()
    for t in THRESHOLDS:
        exact_cl = {frozenset(m) for m in clusters_of(all_pairs[exact >= t], n).values()}
        same = sum(frozenset(m) in exact_cl for m in cl_prod[t].values())
        say(f"At t = {t}: {same} of {len(cl_prod[t])} production clusters are exactly a component of the exact graph "
            f"({len(exact_cl)} components).")
    say()

    # --- speed
    say("### Signature speed (CPU seconds of one process = per core)")
    say()
    say("| implementation | documents | CPU s | docs/s/core | words/s/core | wall s |")
    say("|---|---|---|---|---|---|")

    def row(name, c, w, docs_=n, words_=n_words):
        say(f"| {name} | {docs_} | {c:.2f} | {docs_ / c:.0f} | {words_ / c / 1e6:.2f} M | {w:.2f} |")

    row(f"ours, hash={cfg.hash} (signatures + band keys, batches of {args.batch})", c_sig, w_sig)
    for h in ("sha1", "xxh3", "words64"):
        if h == cfg.hash:
            continue
        c2 = MinHashConfig(hash=h)
        _, c, w = timed(our_signatures, docs, c2, args.batch)
        row(f"ours, hash={h}" + (" (datasketch-identical)" if h == "sha1" else ""), c, w)
    _, c, w = timed(our_signatures, docs, MinHashConfig(hash="sha1", scheme="legacy"), args.batch)
    row("ours, hash=sha1, scheme=legacy (datasketch < 2.0)", c, w)
    # every ground-truth text (short pages included), repeated to >= 10,000 documents
    allt = load_texts(args.gt, 0)
    allt = allt * -(-10000 // len(allt))
    aw = sum(len(words(t)) for t in allt)
    _, c, w = timed(our_signatures, allt, cfg, args.batch)
    row(f"ours, hash={cfg.hash}, on all ground-truth texts ({aw / len(allt):.0f} words/doc)", c, w, len(allt), aw)
    if not args.no_datatrove:
        try:
            for hash_fc, precision in (("xxhash", 64), ("sha1", 32)):
                step, dcfg, run = datatrove_signatures(docs, cfg, hash_fc, precision)
                _, c, w = timed(run)
                row(f"datatrove {_dt_version()} MinhashDedupSignature, get_shingles + get_signature "
                    f"({dcfg.num_buckets}x{dcfg.hashes_per_bucket}, {hash_fc}-{precision})", c, w)
            step, dcfg, run = datatrove_signatures(docs, cfg)
            _, c, w = timed(datatrove_full_stage, docs, step)
            row("datatrove, whole stage-1 run, xxhash-64 (+ 20 bucket files written and sorted)", c, w)
        except Exception as e:  # noqa: BLE001 - report, do not crash the benchmark
            say(f"| datatrove | - | - | not run: {type(e).__name__}: {e} | - | - |")
    say()
    say(f"End to end in this process: signatures + band keys {c_sig:.2f} s CPU, candidate pairs from "
        f"band keys {c_pairs:.2f} s ({len(cand)} pairs), total {c_sig + c_pairs:.2f} s CPU for {n} documents "
        f"({n / (c_sig + c_pairs):.0f} docs/s); exact Jaccard of {len(all_pairs)} pairs for the ground "
        f"truth {c_exact:.2f} s.")
    if not args.no_datatrove and not args.no_datatrove_e2e:
        say()
        say(f"### End to end: datatrove {_dt_version()} MinHash dedup (stages 1-4) vs ours, same documents")
        say()
        t = THRESHOLDS[0]
        try:
            dt = datatrove_e2e(docs, cfg)
        except Exception as e:  # noqa: BLE001 - report, do not crash the benchmark
            dt = None
            say(f"datatrove end to end not run: {type(e).__name__}: {e}")
        if dt is not None:
            dcfg = dt["dcfg"]
            # ours, in this process: signatures + band keys, production block functions at t, components
            c0, w0 = time.process_time(), time.perf_counter()
            cl_ours = clusters_of(p_edge_codes[t], n)
            c_comp, w_comp = time.process_time() - c0, time.perf_counter() - w0
            ours_cpu = c_sig + sum(v for k, v in p_cpu.items() if not (k.startswith("verify_pairs") and
                                                                       not k.endswith(f" {t}")))
            say(f"datatrove pipeline steps called in this process on a temp folder, n_grams={dcfg.n_grams}, "
                f"{dcfg.num_buckets} buckets x {dcfg.hashes_per_bucket} hashes, {dcfg.hash_config.hash_fc}-"
                f"{dcfg.hash_config.precision}, seed={dcfg.seed}, our word tokeniser (as in the speed table). "
                f"datatrove clusters every pair that shares one bucket (no Jaccard verification); ours verifies "
                f"band candidates by exact Jaccard at t = {t} before the components.")
            say()
            say("| stage | CPU s | wall s |")
            say("|---|---|---|")
            for k, (c, w) in dt["times"].items():
                say(f"| datatrove {k} | {c:.2f} | {w:.2f} |")
            dc = sum(c for c, _ in dt["times"].values())
            dw = sum(w for _, w in dt["times"].values())
            say(f"| **datatrove, stages 1-4 total** | **{dc:.2f}** | **{dw:.2f}** |")
            say(f"| ours: signatures + band keys ({cfg.hash}) | {c_sig:.2f} | {w_sig:.2f} |")
            for k, v in p_cpu.items():
                if k.startswith("verify_pairs") and not k.endswith(f" {t}"):
                    continue
                say(f"| ours: {k} | {v:.2f} | - |")
            say(f"| ours: connected components of the verified edges | {c_comp:.2f} | {w_comp:.2f} |")
            say(f"| **ours, total (CPU)** | **{ours_cpu + c_comp:.2f}** | - |")
            say()
            # score both clusterings against exact J >= t
            by_c: dict[int, list[int]] = {}
            for d, c in dt["cluster_of"].items():
                by_c.setdefault(c, []).append(d)
            rm = set(dt["removed"].tolist())
            dt_cl = []
            for m in by_c.values():
                m = sorted(m)
                keep = [i for i in m if i not in rm]
                dt_cl.append((m, keep[0] if len(keep) == 1 else -1))
            ours_cl = [(m, int(reference.choose_kept([{"id": doc_id(i), "text_chars": len(docs[i]), "num_images": 0}
                                                  for i in m])["id"][1:])) for m in cl_ours.values()]
            exact_cl = [(m, int(reference.choose_kept([{"id": doc_id(i), "text_chars": len(docs[i]), "num_images": 0}
                                                   for i in m])["id"][1:]))
                        for m in clusters_of(all_pairs[exact >= t], n).values()]
            say(f"Clusters scored against exact J >= {t} (pair universe as above: planted + LSH candidates + "
                f"production candidates; same-cluster pairs outside it get exact J computed). Pair precision = "
                f"same-cluster pairs with exact J >= {t} / same-cluster pairs; pair recall = true pairs in one "
                f"cluster / true pairs. datatrove: {dt['dup_pairs']} duplicate pairs written by stage 2, "
                f"{len(dt['removed'])} ids in the .remove file, {dt['kept']} of {n} documents kept by stage 4.")
            say()
            say(f"| clustering | clusters | clustered docs | removed | same-cluster pairs | pair precision "
                f"| pair recall | removed with no J >= {t} partner in cluster | removed with J < {t} to kept doc |")
            say("|---|---|---|---|---|---|---|---|---|")
            for name, cl in (("datatrove stages 1-3 (LSH bucket matches, union-find)", dt_cl),
                             (f"ours (verified edges at {t}, components)", ours_cl),
                             (f"reference: components of exact J >= {t}", exact_cl)):
                s = clustered_pair_scores(cl, all_pairs, exact, sets, n, t)
                say(f"| {name} | {s['clusters']} | {s['clustered']} | {s['removed']} | {s['pairs']} "
                    f"| **{s['precision']:.4f}** | **{s['recall']:.4f}** | {s['no_partner']} | {s['low_to_kept']} |")
            say()
            ours_set = {frozenset(m) for m in cl_ours.values()}
            ex_set = {frozenset(m) for m, _ in exact_cl}
            say(f"datatrove clusters equal to one of ours: {sum(frozenset(m) in ours_set for m, _ in dt_cl)} of "
                f"{len(dt_cl)}; equal to a component of the exact J >= {t} graph: "
                f"{sum(frozenset(m) in ex_set for m, _ in dt_cl)} (ours: {sum(m in ex_set for m in ours_set)} of "
                f"{len(ours_set)}; exact components: {len(ex_set)}).")
    if not args.no_ray:
        say()
        say(f"### End to end on Ray: `flows.ray_ops.duplicate_clusters` ({n} documents)")
        say()
        runs, warm_s = ray_dedup(table, cfg, args.ray_blocks, args.ray_partitions)
        say(f"ray.init(num_cpus=2) on this machine, `ray.data.from_arrow` of the same table in {args.ray_blocks} "
            f"blocks (texts as one-element lists, minhash_bands and text_hash as the operator makes them), "
            f"num_partitions={args.ray_partitions}; wall clock of the call, after a warm-up call on 300 documents "
            f"({warm_s:.1f} s) that starts the workers.")
        say()
        say("| run | wall s | docs/s | candidate pairs | edges | rounds | clusters | documents in clusters "
            "| duplicates removed |")
        say("|---|---|---|---|---|---|---|---|---|")
        for label, thr, wall, counts, _ in runs:
            say(f"| {label} | {wall:.1f} | {n / wall:.0f} | {counts['candidate_pairs']} | {counts['edges']} "
                f"| {counts['rounds']} | {counts['clusters']} | {counts['documents_in_clusters']} "
                f"| {counts['duplicates_removed']} |")
        say()
        for label, thr, wall, counts, assigned in runs:
            shown = {k: v for k, v in counts.items() if not (k == "capped_examples" and not v)}
            say(f"Counts, {label}: `{json.dumps(shown)}`")
            say()
            if thr is not None and thr in cl_prod:
                got = {}
                for i, c in zip(assigned["id"], assigned["dup_cluster_id"]):
                    got.setdefault(c, set()).add(int(i[1:]))
                mine = {frozenset(m) for m in cl_prod[thr].values()}
                same = sum(frozenset(m) in mine for m in got.values())
                say(f"Ray clusters at {thr} equal to the in-memory production clusters: {same} of {len(got)} "
                    f"(in-memory: {len(mine)}).")
                say()
    if args.out:
        Path(args.out).write_text("\n".join(report) + "\n", encoding="utf8")


def _dt_version() -> str:
    try:
        from importlib.metadata import version
        return version("datatrove")
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    main()
