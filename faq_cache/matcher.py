"""Scoring a question against the FAQ: TF-IDF features and a linear model.

Why this design (measured in bench/faq_eval.py, figures in BENCHMARKS.md):
- rapidfuzz ratios are unsafe as confidences and cost 15-40 ms over 10 k variants;
- character n-grams (2-5, within words) plus word uni/bi-grams, weighted by TF-IDF,
  feed a one-vs-rest linear SVM (scikit-learn's LinearSVC), one class per entry;
- the confidence is the *margin* between the best entry's score and the runner-up's:
  a question that sits between two entries is not answered;
- a background class of off-topic questions (CLINC150 out-of-scope training
  questions, see data/README.md) absorbs questions no entry covers;
- a unique exact match after normalisation is served whatever the margin.
scikit-learn fits the model; lookups use the fitted arrays directly (a few numpy
operations on ~100 features), which keeps p99 well under a millisecond.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from .entries import FaqEntry
from .normalize import normalize

if TYPE_CHECKING:
    from .encoder import Encoder

__all__ = ["Match", "Matcher", "DEFAULT_THRESHOLD", "threshold_for", "MODEL_VERSION", "load_background", "char_ngrams", "word_ngrams"]

# Thresholds by the FAQ's median number of question variants per entry, chosen by
# `bench/faq_eval.py --choose` on Banking77 choice data (never the test questions): the
# lowest margin whose precision there is >= 99 % with 95 % confidence. Measured points:
# 5 → 1.16, 10 → 1.20, 20 → 1.38, 40 → 1.28, ~72 → 0.90; fewer variants never get a lower
# threshold than more variants (monotone envelope). See BENCHMARKS.md.
THRESHOLDS_BY_VARIANTS: tuple[tuple[float, float], ...] = ((20, 1.38), (40, 1.28), (72, 0.90))
DEFAULT_THRESHOLD = THRESHOLDS_BY_VARIANTS[-1][1]  # for FAQs with many variants per entry


# The semantic matcher (TF-IDF + sentence embedding), chosen by `bench/faq_eval.py --semantic`
# on Banking77 choice data only: the lowest margin whose precision there has a 95 % lower bound
# >= 99.5 % (so that the lower bound on new questions stays >= 99 %): 1.64 with all variants
# (median 88 per entry); with 5 per entry no margin reaches that, and 1.16 is the one whose lower
# bound is >= 99 %. Between the two measured points the threshold is interpolated (not measured):
# here more variants get the higher bar, because the SVM's margins grow with its data.
# See BENCHMARKS.md "Semantic FAQ matching".
SEMANTIC_THRESHOLDS_BY_VARIANTS: tuple[tuple[float, float], ...] = ((5, 1.16), (88, 1.64))
# Weight of the (unit-length) sentence embedding beside the two unit-length TF-IDF blocks:
# chosen on Banking77 choice data only (bench/faq_eval.py --semantic; BENCHMARKS.md): 2.0 lifted
# the 5-variants-per-entry coverage at 99 % precision from 19 % (1.0) to 30 % (3.0: 30 %, 5.0:
# lower) and left the all-variants figure unchanged (84 %).
EMB_SCALE = 2.0


def threshold_for(variants_per_entry: float, *, semantic: bool = False) -> float:
    """The shipped threshold for a FAQ with this median number of variants per entry."""
    points = SEMANTIC_THRESHOLDS_BY_VARIANTS if semantic else THRESHOLDS_BY_VARIANTS
    if variants_per_entry <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if variants_per_entry <= x1:
            t = (math.log(variants_per_entry) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return round(y0 + t * (y1 - y0), 3)
    return points[-1][1]
MODEL_VERSION = 3  # bump when features change: stored models of older versions are refitted
BACKGROUND = "__background__"


def char_ngrams(text: str, lo: int = 2, hi: int = 5) -> list[str]:
    """Character n-grams inside word boundaries (like scikit-learn's char_wb)."""
    grams: list[str] = []
    for word in text.split():
        w = f" {word} "
        n_max = min(hi, len(w))
        for n in range(lo, n_max + 1):
            grams.extend(w[i:i + n] for i in range(len(w) - n + 1))
    return grams


def word_ngrams(text: str) -> list[str]:
    words = text.split()
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def load_background() -> list[str]:
    """Off-topic questions shipped with the package (one per line)."""
    text = (Path(__file__).resolve().parent / "data" / "background.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@dataclass(frozen=True, slots=True)
class Match:
    """The best entry for a question, its margin over the runner-up, and whether it clears the bar."""

    entry_id: str | None
    score: float
    runner_up: str | None
    accepted: bool
    reason: str  # "exact", "margin", or why not: "below_threshold", "off_topic", "ambiguous_exact", "empty"


class _Block:
    """One TF-IDF feature block (vocabulary, idf, offset into the weight matrix)."""

    __slots__ = ("vocab", "idf", "offset")

    def __init__(self, vocab: dict[str, int], idf: np.ndarray, offset: int) -> None:
        self.vocab, self.idf, self.offset = vocab, idf, offset

    def features(self, grams: Iterable[str]) -> tuple[list[int], list[float]]:
        counts = Counter(g for g in grams if g in self.vocab)
        if not counts:
            return [], []
        idx = [self.vocab[g] for g in counts]
        vals = np.array([1.0 + math.log(c) for c in counts.values()]) * self.idf[idx]
        vals /= np.linalg.norm(vals)
        return [i + self.offset for i in idx], vals.tolist()


class Matcher:
    """A fitted FAQ matcher. Build with `Matcher.fit(entries)`; pickles as plain arrays."""

    def __init__(self, labels: list[str], blocks: list[_Block], weights: np.ndarray, bias: np.ndarray,
                 exact: dict[str, str | None], threshold: float = DEFAULT_THRESHOLD, *,
                 emb_weights: np.ndarray | None = None, encoder: "Encoder | None" = None) -> None:
        self.labels = labels
        self.blocks = blocks
        self.weights = weights  # (n_features, n_classes), column gathers are cheap in this layout
        self.bias = bias
        self.exact = exact  # normalised question -> entry id (None when two entries share it)
        self.threshold = threshold
        self.version = MODEL_VERSION
        # Semantic part: weights of the sentence embedding (dim, n_classes), scaled by EMB_SCALE
        # at fit time, and which encoder they belong to (a stored model needs the same one).
        self.emb_weights = emb_weights
        self.encoder_id = encoder.id if encoder is not None and emb_weights is not None else None
        self._encoder = encoder

    def __getstate__(self) -> dict:
        # an onnxruntime session does not pickle; the memo is per process
        return {k: v for k, v in self.__dict__.items() if k not in ("_encoder", "_memo")}

    def __setstate__(self, state: dict) -> None:
        state.setdefault("emb_weights", None)
        state.setdefault("encoder_id", None)
        self.__dict__.update(state)
        self._encoder = None

    @property
    def kind(self) -> str:
        """"semantic" (TF-IDF + sentence embedding) or "lexical" (TF-IDF only)."""
        return "semantic" if self.emb_weights is not None else "lexical"

    def attach(self, encoder: "Encoder | None") -> bool:
        """Give a loaded (unpickled) semantic model its encoder; False if it cannot be used here."""
        if self.emb_weights is None:
            return True
        if encoder is None or encoder.id != self.encoder_id:
            return False
        self._encoder = encoder
        return True

    @property
    def n_entries(self) -> int:
        return sum(1 for label in self.labels if label != BACKGROUND)

    @classmethod
    def fit(cls, entries: Sequence[FaqEntry], *, threshold: float | None = None,
            background: Sequence[str] | None = None, C: float = 1.0,
            encoder: "Encoder | None | str" = "auto", emb_scale: float = EMB_SCALE) -> "Matcher":
        """Fit on every question variant; entries with no usable question are skipped.

        `threshold` None picks the shipped threshold for this FAQ's variants per entry.
        `encoder` "auto": the local sentence encoder if the semantic extra is installed
        (see encoder.py), None: lexical only."""
        texts: list[str] = []
        labels: list[str] = []
        exact: dict[str, str | None] = {}
        for entry in entries:
            for q in entry.questions:
                nq = normalize(q)
                if not nq:
                    continue
                texts.append(nq)
                labels.append(entry.id)
                if exact.get(nq, entry.id) != entry.id:
                    exact[nq] = None  # the same words under two answers: never served by exact match
                else:
                    exact.setdefault(nq, entry.id)
        counts = Counter(labels)
        if not texts:  # an empty FAQ costs nothing: not even the import of scikit-learn
            return cls([], [], np.zeros((0, 0)), np.zeros(0), {}, DEFAULT_THRESHOLD)
        if encoder == "auto":
            from .encoder import load_encoder

            encoder = load_encoder()
        if threshold is None:
            threshold = threshold_for(float(np.median(list(counts.values()))), semantic=encoder is not None)
        from scipy.sparse import hstack
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.svm import LinearSVC

        bg = [normalize(t) for t in (load_background() if background is None else background)]
        bg = [t for t in bg if t and t not in exact]
        texts += bg
        labels += [BACKGROUND] * len(bg)
        vectorizers = [
            TfidfVectorizer(analyzer=char_ngrams, sublinear_tf=True, dtype=np.float64),
            TfidfVectorizer(analyzer=word_ngrams, sublinear_tf=True, dtype=np.float64),
        ]
        parts = [v.fit_transform(texts) for v in vectorizers]
        if encoder is not None:
            from scipy.sparse import csr_matrix

            parts.append(csr_matrix(emb_scale * encoder.encode(texts)))
        X = hstack(parts).tocsr()
        classes = sorted(set(labels))
        if len(classes) == 1:  # cannot happen with a background, but keep fit total
            classes.append(BACKGROUND if classes[0] != BACKGROUND else "__none__")
        svm = LinearSVC(C=C)
        svm.fit(X, labels)
        coef, intercept = svm.coef_, svm.intercept_
        if len(svm.classes_) == 2:  # binary LinearSVC has one row: score(class 1) = w.x+b
            coef = np.vstack([-coef[0], coef[0]])
            intercept = np.array([-intercept[0], intercept[0]])
        blocks, offset = [], 0
        for v in vectorizers:
            blocks.append(_Block(dict(v.vocabulary_), v.idf_.copy(), offset))
            offset += len(v.vocabulary_)
        # float32 halves the model (23 -> 12 MB for 10 k variants); margins differ by < 1e-6.
        weights = np.ascontiguousarray(coef.T, dtype=np.float32)
        emb_weights = None
        if encoder is not None:  # the embedding's columns come last; fold the scale into them
            emb_weights = np.ascontiguousarray(emb_scale * weights[offset:])
            weights = np.ascontiguousarray(weights[:offset])
        return cls(list(svm.classes_), blocks, weights, intercept.copy(), exact, threshold,
                   emb_weights=emb_weights, encoder=encoder)

    def scores(self, normalized: str) -> np.ndarray:
        """Every class's score for a normalised question. The last few are remembered, so the
        cache tier's `match` and the prompt's `retrieve` for one message encode it once."""
        memo = self.__dict__.setdefault("_memo", {})
        hit = memo.get(normalized)
        if hit is not None:
            return hit
        s = self._scores(normalized)
        if len(memo) >= 32:
            try:
                memo.pop(next(iter(memo)), None)
            except (StopIteration, RuntimeError):  # another thread trimmed it meanwhile
                pass
        memo[normalized] = s
        return s

    def _scores(self, normalized: str) -> np.ndarray:
        idx: list[int] = []
        vals: list[float] = []
        for block, grams in zip(self.blocks, (char_ngrams(normalized), word_ngrams(normalized))):
            i, v = block.features(grams)
            idx += i
            vals += v
        s = self.bias.copy() if not idx else np.asarray(vals) @ self.weights[idx] + self.bias
        if self.emb_weights is not None:
            if self._encoder is None:
                raise RuntimeError("a semantic FAQ model needs its encoder: call attach() after loading it")
            s = s + self._encoder.encode_one(normalized) @ self.emb_weights
        return s

    def retrieve(self, text: str, k: int, *, normalized: bool = False) -> list[tuple[str, float]]:
        """The `k` entries that best match `text` as (entry id, score), best first.

        For the LLM's reference material (faq_cache.retrieval), not for answering: there is
        no threshold and no background class. It ranks by the same `scores()` as `match()`,
        so whatever improves matching improves retrieval too; an exact variant comes first."""
        q = text if normalized else normalize(text)
        if not q or not self.labels or k <= 0:
            return []
        s = self.scores(q)
        order = np.argsort(s)[::-1]
        out: list[tuple[str, float]] = []
        exact = self.exact.get(q)
        if exact is not None:
            out.append((exact, float(s[self.labels.index(exact)])))
        for i in order:
            label = self.labels[int(i)]
            if len(out) >= k:
                break
            if label != BACKGROUND and label != exact:
                out.append((label, float(s[int(i)])))
        return out

    def match(self, text: str, *, threshold: float | None = None, normalized: bool = False) -> Match:
        """Score `text`; `accepted` only when it is sure (see the module docstring)."""
        threshold = self.threshold if threshold is None else threshold
        q = text if normalized else normalize(text)
        if not q or not self.labels:
            return Match(None, 0.0, None, False, "empty")
        s = self.scores(q)
        order = np.argsort(s)[::-1]
        best, second = int(order[0]), int(order[1]) if len(order) > 1 else int(order[0])
        margin = float(s[best] - s[second]) if len(order) > 1 else float(s[best])
        best_label, second_label = self.labels[best], self.labels[second]
        if q in self.exact:
            eid = self.exact[q]
            if eid is None:
                return Match(best_label if best_label != BACKGROUND else None, margin, second_label, False,
                             "ambiguous_exact")
            return Match(eid, max(margin, threshold), second_label, True, "exact")
        if best_label == BACKGROUND:
            runner = second_label if second_label != BACKGROUND else None
            return Match(None, -margin, runner, False, "off_topic")
        runner = None if second_label == BACKGROUND else second_label
        if margin >= threshold:
            return Match(best_label, margin, runner, True, "margin")
        return Match(best_label, margin, runner, False, "below_threshold")
