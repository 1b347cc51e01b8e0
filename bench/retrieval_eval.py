"""Retrieval for the LLM prompt: is the right FAQ entry among what the LLM is given, and
what do the extra prompt tokens cost?

Data: Banking77's training file (`../shared/data/banking77/train.csv`, CC-BY-4.0), split
exactly as `bench/faq_eval.py` does (its functions are imported, not copied: same seed,
same 8 intents held out whole, 70 % of each other intent's questions as the FAQ, 20 % as
the test split). The published test split is never used.

Method: each scenario loads an FAQ (all variants, or k variants per entry) into a real
`FaqStore`; every test question goes through the cache's own decision
(`Matcher.match(...).accepted`); for each question the cache does NOT answer, the shipped
`KnowledgeRetriever` ranks the entries and `build_reference` builds the block the LLM
would be sent, with the default budget (`TIERBOT_RAG_PASSAGES` 5, `TIERBOT_RAG_TOKENS`
1000). "Recall" = the right entry is among the passages given. Banking77 has no answers,
so each entry gets a synthetic answer of `--answer-words` words (default 60, a typical
help-centre FAQ answer): answers do not change the ranking (entries are ranked on their
questions), only the token figures. Tokens are the chain's own estimate (4 characters a
token) of the reference block plus the fixed instruction paragraph the system prompt gets;
their cost is priced at each provider's default (first) model from `bot/data/prices.toml`.
Latency: `retrieve()` CPU time per message with all 10,003 Banking77 questions loaded.

    python bench/retrieval_eval.py [--data DIR] [--seed N] [--answer-words 60] [--variants all,20,10,5]
    python bench/retrieval_eval.py --report-messages 1000000 --variants none   # the report's part
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bot.config import Config  # noqa: E402
from bot.llm.providers.base import estimate_tokens  # noqa: E402
from bot.llm.reference import REFERENCE_INSTRUCTION, RagSettings, build_reference  # noqa: E402
from bot.llm.routes import LLMSettings  # noqa: E402
from bot.pricing import PriceBook  # noqa: E402
from faq_cache.entries import FaqEntry  # noqa: E402
from faq_cache.retrieval import KnowledgeRetriever  # noqa: E402
from faq_cache.store import FaqStore  # noqa: E402
from faq_eval import SEED, read_csv, split_banking  # noqa: E402

FILLER = ("you can do this in the app under settings or on the website after signing in and if it "
          "does not work please contact our support team who will check your account and help "
          "you with the next steps as soon as possible usually within one business day").split()


def answer(intent: str, words: int) -> str:
    body = [FILLER[i % len(FILLER)] for i in range(max(0, words - 3))]
    return f"About {intent.replace('_', ' ')}: " + " ".join(body) + "."


def entries(faq: dict[str, list[str]], per_entry: int | None, words: int, seed: int) -> list[FaqEntry]:
    import random

    rng = random.Random(seed + 1)  # the same sample as faq_eval.entries_from
    out = []
    for intent, qs in faq.items():
        qs = rng.sample(qs, per_entry) if per_entry and len(qs) > per_entry else qs
        out.append(FaqEntry(intent, answer(intent, words), list(qs)))
    return out


def pct(x: float) -> str:
    return f"{100 * x:5.1f} %"


def scenario(title: str, faq_entries: list[FaqEntry], test, held_test, rag: RagSettings, prices) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = FaqStore(Path(tmp) / "store")
        store.import_entries(faq_entries)
        matcher = store.matcher()
        retriever = KnowledgeRetriever(store)
        ranks, given_hit, tokens, n_given = [], [], [], []
        answered = 0
        for q, intent in test:
            if matcher.match(q).accepted:
                answered += 1
                continue
            ranked = [p.id for p in retriever.retrieve(q, 10)]
            ranks.append(ranked.index(f"faq:{intent}") if f"faq:{intent}" in ranked else 99)
            ref = build_reference(retriever.retrieve(q, rag.passages), rag)
            given = [p.id for p in ref.passages] if ref else []
            given_hit.append(f"faq:{intent}" in given)
            n_given.append(len(given))
            tokens.append((ref.tokens if ref else 0) + estimate_tokens("\n\n" + REFERENCE_INSTRUCTION))
        held_tokens = []
        for q in held_test:
            if not matcher.match(q).accepted:
                ref = build_reference(retriever.retrieve(q, rag.passages), rag)
                held_tokens.append((ref.tokens if ref else 0) + estimate_tokens("\n\n" + REFERENCE_INSTRUCTION))
        store.close()
    r = np.array(ranks)
    print(f"\n## {title} (matcher: {getattr(matcher, 'kind', 'lexical')})")
    print(f"{len(test)} in-scope test questions; the cache answered {answered} ({pct(answered / len(test))}); "
          f"{len(ranks)} went to the LLM with references")
    print("right entry among the first k retrieved (questions the cache did not answer): " +
          ", ".join(f"k={k} {pct(float(np.mean(r < k)))}" for k in (1, 3, 5, 8, 10)))
    recall = float(np.mean(given_hit))
    print(f"right entry among the passages GIVEN to the LLM (default budget: {rag.passages} passages, "
          f"{rag.tokens} tokens): {pct(recall)} ({sum(given_hit)}/{len(given_hit)}); "
          f"passages given: mean {statistics.fmean(n_given):.2f}")
    t = np.array(tokens)
    print(f"extra prompt tokens per LLM message (reference block + instruction, estimated): mean {t.mean():.0f}, "
          f"p50 {np.percentile(t, 50):.0f}, p95 {np.percentile(t, 95):.0f}, max {t.max():.0f}; "
          f"held-out intents (not in the FAQ, {len(held_tokens)} questions): mean {statistics.fmean(held_tokens):.0f}")
    for provider, model, price in prices:
        c = price.cost(int(round(t.mean())), 0)
        print(f"  at {provider}/{model} (${price.input_per_m:g}/M input): ${c:.7f} per LLM message, "
              f"${c * 1000:.4f} per 1,000 LLM messages")
    return {"recall": recall, "tokens_mean": float(t.mean())}


def latency(rows: list[tuple[str, str]], questions: list[str], words: int, rag: RagSettings) -> None:
    by: dict[str, list[str]] = defaultdict(list)
    for text, label in rows:
        by[label].append(text)
    with tempfile.TemporaryDirectory() as tmp:
        store = FaqStore(Path(tmp) / "store")
        store.import_entries([FaqEntry(i, answer(i, words), qs) for i, qs in by.items()])
        store.matcher()
        retriever = KnowledgeRetriever(store)
        for q in questions[:200]:
            retriever.retrieve(q, rag.passages)
        cpu, wall = [], []
        for q in questions:
            t, c = time.perf_counter(), time.thread_time()
            build_reference(retriever.retrieve(q, rag.passages), rag)
            cpu.append((time.thread_time() - c) * 1000)
            wall.append((time.perf_counter() - t) * 1000)
        store.close()
    print(f"\n## Retrieval cost per LLM message ({sum(map(len, by.values()))} variants in {len(by)} entries loaded, "
          f"{len(questions)} questions, load average {os.getloadavg()[0]:.1f})")
    print(f"retrieve + build_reference: CPU p50 {np.percentile(cpu, 50):.3f} ms, p99 {np.percentile(cpu, 99):.3f} ms; "
          f"wall p50 {np.percentile(wall, 50):.3f} ms, p99 {np.percentile(wall, 99):.3f} ms")


def report_part(n: int) -> None:
    """The daily report's knowledge part over a synthetic day of `n` messages, a third of them
    LLM answers given 5 sources (out of 300), in a real ledger file at the latest schema."""
    import datetime as dt
    import json
    import random
    import sqlite3
    from zoneinfo import ZoneInfo

    from bot.report.compute import ReportInputs, day_knowledge
    from bot.storage.sqlite.ledger_schema import migrate

    utc = ZoneInfo("UTC")
    day = dt.date(2026, 12, 1)
    t0 = dt.datetime(2026, 12, 1, tzinfo=utc).timestamp()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "ledger.sqlite3", isolation_level=None)
        migrate(conn)
        conn.execute("BEGIN")
        for i in range(n):
            pairs = [[f"faq:{rng.randrange(300)}", f"Question {rng.randrange(300)} about something"]
                     for _ in range(5)] if i % 3 == 0 else None
            conn.execute(
                "INSERT INTO messages (ts, platform, conversation_id, user_id, tier, fallback, input_tokens, "
                "output_tokens, latency_ms, question, meta, sources) VALUES (?, 'telegram', ?, 'u', ?, 0, 1, 1, 5.0, "
                "'q', ?, ?)", (t0 + i * 86_000 / n, str(i % 5000), "llm" if pairs else "cache",
                               json.dumps({"sources": pairs}) if pairs else None,
                               "\n".join(a for a, _ in pairs) if pairs else None))
        conn.execute("COMMIT")
        print(f"\n## Daily report, knowledge part ({n:,} messages, {(n + 2) // 3:,} grounded answers x 5 sources)")
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            day_knowledge(conn, ReportInputs(day, utc))
            print(f"day_knowledge: CPU {time.process_time() - c:.2f} s, wall {time.perf_counter() - t:.2f} s "
                  f"(load average {os.getloadavg()[0]:.1f})")
        conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--answer-words", type=int, default=60)
    ap.add_argument("--variants", default="all,20,10,5", help="scenarios: 'all' and/or variants per entry")
    ap.add_argument("--report-messages", type=int, default=0,
                    help="also time the daily report's knowledge part on a synthetic day of this many messages")
    args = ap.parse_args(argv)
    if args.report_messages:
        report_part(args.report_messages)
        if args.variants == "none":
            return 0
    rows = read_csv(args.data / "banking77" / "train.csv", "category")
    faq, _choose, test, _held_choose, held_test = split_banking(rows, args.seed)
    config = Config.from_env({})
    rag = RagSettings.from_config(config)
    book, llm = PriceBook.load(config), LLMSettings.from_config(config)
    prices = [(p, llm.models[p][0], book.price(p, llm.models[p][0])) for p in llm.chain]
    prices = [x for x in prices if x[2] is not None]
    print(f"# Retrieval evaluation (split seed {args.seed}); {len(faq)} entries, {len(test)} test questions, "
          f"{len(held_test)} questions of {8} held-out intents; answers of {args.answer_words} words "
          f"(~{estimate_tokens(answer('x', args.answer_words))} tokens)")
    print(f"instruction paragraph: {estimate_tokens(REFERENCE_INSTRUCTION)} tokens")
    for v in args.variants.split(","):
        per = None if v == "all" else int(v)
        title = "Banking77, all variants (~90 per entry)" if per is None else f"Banking77, {per} variants per entry"
        scenario(title, entries(faq, per, args.answer_words, args.seed), test, held_test, rag, prices)
    latency(rows, [q for q, _ in test], args.answer_words, rag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
