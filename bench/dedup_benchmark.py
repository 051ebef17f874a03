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
Speed: CPU seconds of this process (time.process_time: per core), signatures + band keys in
batches of --batch documents; datatrove's `MinhashDedupSignature` (same n-gram size, buckets and
hashes per bucket, its default xxhash-64 (and sha1-32) and text normalisation, our word tokeniser
plugged in because its default NLTK tokeniser needs the punkt data downloaded) on the same texts.
"""
from __future__ import annotations

import argparse
import glob
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import operators.minhash as mh  # noqa: E402
from operators.minhash import MinHashConfig, band_keys, hashed_batch, shingles, signatures_from_hashes  # noqa: E402
from operators.quality import words  # noqa: E402

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
    all_pairs = np.union1d(planted, cand)
    c0 = time.process_time()
    exact = np.array([jaccard(sets[p // n], sets[p % n]) for p in all_pairs.tolist()])
    c_exact = time.process_time() - c0
    est = (sigs[all_pairs // n] == sigs[all_pairs % n]).mean(axis=1)
    is_cand = np.isin(all_pairs, cand)
    is_planted = np.isin(all_pairs, planted)
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
