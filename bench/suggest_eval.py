""""Did you mean…?" suggestions: how often the list holds the right entry, and how often
an off-topic question gets a list at all, for each score floor.

Suggestions are computed for questions the cache did not answer (below the shipped
threshold) and only shown when the templates answer; this asks every such question.

Data and splits are `bench/faq_eval.py`'s (Banking77 train split, seeded, 8 intents held
out whole; CLINC150 from ../shared/data), so the figures line up with BENCHMARKS.md's FAQ
section. Two FAQs: 5 variants per entry (what operators write) and all FAQ-split variants.

- *in scope*: Banking77 questions of FAQ intents the cache did not answer; "useful" = the
  right entry is in the list, "wrong list" = a list without it.
- *out of scope*: questions no entry covers; "listed" = they got a list at all (noise):
  the 8 held-out Banking77 intents (near misses: banking questions the FAQ lacks),
  CLINC150's non-banking intents (val split) and CLINC150 `oos_val`.

The floor is chosen on the *choice* halves only (the choice split; the first half of the
held-out-intent and CLINC questions) and the figures at the chosen floor are reported on the
test halves. Rule: the lowest floor at which at most `--noise` (10 %) of the CLINC150
out-of-scope choice questions get a list — a list for "what's the weather" makes the bot
look broken; a banking question the FAQ lacks getting a near banking entry is much less so.

`--matcher semantic` fits the TF-IDF + sentence-embedding matcher (the `semantic` extra);
its scores differ in scale, so it has its own floor.

    python bench/suggest_eval.py [--data DIR] [--seed N] [--noise 0.10] [--k 3] [--matcher lexical|semantic]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from faq_cache.matcher import Matcher  # noqa: E402
from faq_cache.suggestions import SUGGEST_FLOORS, likely_entries  # noqa: E402
from faq_eval import SEED, entries_from, fmt_pct, read_csv, split_banking  # noqa: E402

FLOORS = tuple(round(x, 2) for x in np.arange(-1.2, 0.41, 0.1))


def ranked(matcher: Matcher, questions: list[str], k: int) -> list[tuple[bool, list[tuple[str, float]]]]:
    """Per question: whether the cache answers it, and its top-k entries with scores (no floor)."""
    out = []
    for q in questions:
        out.append((matcher.match(q).accepted, matcher.retrieve(q, k)))
    return out


def at_floor(rows, labels, floor: float) -> dict[str, float]:
    """Among questions the cache did not answer: share listed, share whose list holds the right entry."""
    asked = listed = useful = 0
    for (answered, top), label in zip(rows, labels):
        if answered:
            continue
        asked += 1
        shown = [eid for eid, s in top if s >= floor]
        listed += bool(shown)
        useful += label is not None and label in shown
    return {"asked": asked, "listed": listed / asked if asked else float("nan"),
            "useful": useful / asked if asked else float("nan")}


def halves(items: list) -> tuple[list, list]:
    return items[0::2], items[1::2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--noise", type=float, default=0.10, help="most CLINC150 off-topic questions listed")
    ap.add_argument("--k", type=int, default=3, help="suggestions offered at most")
    ap.add_argument("--matcher", choices=("lexical", "semantic"), default="lexical")
    args = ap.parse_args(argv)
    fit_kw = {}
    if args.matcher == "semantic":
        from faq_cache.encoder import load_encoder

        fit_kw["encoder"] = load_encoder()
        if fit_kw["encoder"] is None:
            raise SystemExit("the semantic extra is not installed: pip install '.[semantic]'")
    start = time.time()
    banking = read_csv(args.data / "banking77" / "train.csv", "category")
    faq, choose, test, held_choose, held_test = split_banking(banking, args.seed)
    domains = json.loads((args.data / "clinc150" / "domains.json").read_text())
    not_banking = [t for t, intent in read_csv(args.data / "clinc150" / "val.csv", "intent")
                   if intent not in set(domains["banking"]) | set(domains.get("credit_cards", []))]
    oos = [t for t, _ in read_csv(args.data / "clinc150" / "oos_val.csv", "intent")]
    clinc_choose, clinc_test = halves(not_banking + oos)
    print(f"# Did-you-mean evaluation ({args.matcher} matcher, split seed {args.seed}, k={args.k}); "
          f"shipped floor {SUGGEST_FLOORS[args.matcher]}")
    print(f"CLINC150 off-topic: {len(not_banking)} non-banking/credit-card val questions + {len(oos)} oos_val, "
          "halved into choice/test")
    chosen_floors = {}
    for title, entries in (("5 variants per entry", entries_from(faq, 5)), ("all variants", entries_from(faq))):
        t0 = time.time()
        matcher = Matcher.fit(entries, **fit_kw)
        fit_s = time.time() - t0
        sets = {
            "choice": [(choose, [lab for _, lab in choose]), (held_choose, [None] * len(held_choose)),
                       (clinc_choose, [None] * len(clinc_choose))],
            "test": [(test, [lab for _, lab in test]), (held_test, [None] * len(held_test)),
                     (clinc_test, [None] * len(clinc_test))],
        }
        results = {}
        for name, parts in sets.items():
            results[name] = []
            for qs, labels in parts:
                texts = [q if isinstance(q, str) else q[0] for q in qs]
                results[name].append((ranked(matcher, texts, args.k), labels))
        print(f"\n## Banking77, {title} ({sum(len(e.questions) for e in entries)} variants, fit {fit_s:.0f} s)")
        print("floor | in scope, not answered: useful / wrong list | held-out intents listed | "
              "CLINC off-topic listed   (choice halves)")
        floor = None
        for f in FLOORS:
            ins, held, clinc = (at_floor(rows, labels, f) for rows, labels in results["choice"])
            print(f"{f:5.2f} | {fmt_pct(ins['useful']):>6} / {fmt_pct(ins['listed'] - ins['useful']):>6} "
                  f"(of {ins['asked']}) | {fmt_pct(held['listed']):>6} (of {held['asked']}) | "
                  f"{fmt_pct(clinc['listed']):>6} (of {clinc['asked']})")
            if floor is None and clinc["listed"] <= args.noise:
                floor = f
        floor = FLOORS[-1] if floor is None else floor
        chosen_floors[title] = floor
        for f, label in ((floor, "chosen on choice data"), (SUGGEST_FLOORS[args.matcher], "shipped")):
            ins, held, clinc = (at_floor(rows, labels, f) for rows, labels in results["test"])
            print(f"test halves at floor {f:.2f} ({label}): in-scope questions the cache did not answer "
                  f"({ins['asked']}): right entry listed {fmt_pct(ins['useful'])}, list without it "
                  f"{fmt_pct(ins['listed'] - ins['useful'])}, none {fmt_pct(1 - ins['listed'])}; "
                  f"held-out intents listed {fmt_pct(held['listed'])}; CLINC off-topic listed "
                  f"{fmt_pct(clinc['listed'])}")
        texts = [q for q, _ in test] + clinc_test
        for f in (matcher.match, lambda q: likely_entries(matcher, q, args.k)):
            times = []
            for q in texts:
                t = time.perf_counter()
                f(q)
                times.append((time.perf_counter() - t) * 1000)
            name = "cache lookup (match)" if f == matcher.match else "suggestions (likely_entries)"
            print(f"{name}: p50 {np.percentile(times, 50):.3f} ms, p99 {np.percentile(times, 99):.3f} ms "
                  f"over {len(texts)} questions")
    print(f"\nchosen floors: { {k: float(v) for k, v in chosen_floors.items()} } (total {time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
