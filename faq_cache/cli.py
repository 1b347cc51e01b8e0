"""`tierbot faq import|export|list|add|remove|test|stats`: the operator's FAQ commands."""
from __future__ import annotations

import argparse
import json
import sys

from bot.config import Config

from .entries import FaqImportError, dump_csv, dump_yaml, load_faq_file
from .learned import LearnedCache
from .plugin import open_store
from .settings import FaqSettings
from .store import FaqStore
from .tier import FaqTier

__all__ = ["register"]


def _open() -> tuple[FaqSettings, FaqStore]:
    settings = FaqSettings.from_config(Config.from_env())
    return settings, open_store(settings)


async def _import(args: argparse.Namespace) -> int:
    try:
        entries = load_faq_file(args.file)
    except FaqImportError as e:
        print(f"tierbot faq import: {e}", file=sys.stderr)
        print("nothing was imported", file=sys.stderr)
        return 1
    _, store = _open()
    with store:
        added, updated = store.import_entries(entries, replace=args.replace)
        matcher = store.matcher()  # fit once here so worker processes load it ready-made
        variants = sum(len(e.questions) for e in entries)
        print(f"imported {len(entries)} entries ({variants} questions) from {args.file}: "
              f"{added} added, {updated} updated; {matcher.n_entries} entries in the FAQ")
    return 0


async def _export(args: argparse.Namespace) -> int:
    _, store = _open()
    with store:
        entries = store.entries()
    text = dump_csv(entries) if args.file.endswith(".csv") else dump_yaml(entries)
    with open(args.file, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    print(f"exported {len(entries)} entries to {args.file}")
    return 0


async def _list(args: argparse.Namespace) -> int:
    _, store = _open()
    with store:
        entries = store.entries()
        if args.json:
            print(json.dumps([dict(e.to_dict(), hits=store.hit_count(e.id)) for e in entries],
                             ensure_ascii=False, indent=2))
            return 0
        if not entries:
            print("the FAQ is empty (greetings are still answered); add entries with `tierbot faq import FILE`")
        for e in entries:
            answer = e.answer if len(e.answer) <= 70 else e.answer[:67] + "..."
            print(f"{e.id}  hits={store.hit_count(e.id)}  questions={len(e.questions)}  "
                  f"{e.questions[0]!r} -> {answer!r}" + (f"  tags={','.join(e.tags)}" if e.tags else ""))
    return 0


async def _add(args: argparse.Namespace) -> int:
    _, store = _open()
    with store:
        try:
            entry = store.add(args.question, args.answer, tags=args.tag or [], entry_id=args.id)
        except ValueError as e:
            print(f"tierbot faq add: {e}", file=sys.stderr)
            return 1
        store.matcher()
    print(f"{entry.id}: {len(entry.questions)} question(s) -> {entry.answer!r}")
    return 0


async def _remove(args: argparse.Namespace) -> int:
    _, store = _open()
    with store:
        if not store.remove(args.id):
            print(f"tierbot faq remove: no entry with id {args.id!r} (see `tierbot faq list`)", file=sys.stderr)
            return 1
        store.matcher()
    print(f"removed {args.id}")
    return 0


async def _test(args: argparse.Namespace) -> int:
    from bot.rendering import Renderer

    settings, store = _open()
    with store:
        learned = LearnedCache(settings.directory / "learned", store, enabled=settings.learned,
                               ttl_s=settings.learned_ttl_s) if settings.learned else None
        tier = FaqTier(store, Renderer(), learned=learned, greetings=settings.greetings)
        result = tier.explain(args.question)
        if learned is not None:
            learned.close()
        entry = store.get(result["entry"]) if result.get("entry") and result["kind"] == "faq" else None
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0 if result["answered"] else 1
    if result["kind"] == "greeting":
        print(f"answered by the greeting template greetings/{result['entry'].split(':')[1]}.j2 (lang={result['lang']})")
    elif result["answered"] and result["kind"] == "learned":
        print("answered by the learned cache (an earlier LLM answer to the same question)")
    elif result["answered"]:
        print(f"answered by entry {result['entry']} (score {result['score']} >= threshold {result['threshold']}, "
              f"{result['reason']}):\n  {entry.answer if entry else ''}")
    else:
        why = {"empty": "the FAQ is empty or the message has no words",
               "off_topic": "it looks like none of the FAQ's topics",
               "below_threshold": f"the best entry {result['entry']} is not sure enough "
                                  f"(score {result['score']} < threshold {result['threshold']}; runner-up {result['runner_up']})",
               "ambiguous_exact": "the same question is listed under two entries"}.get(result["reason"], result["reason"])
        print(f"no entry would answer: {why}")
    return 0 if result["answered"] else 1


async def _stats(args: argparse.Namespace) -> int:
    _, store = _open()
    with store:
        print(json.dumps({"totals": store.stats(), "top": store.top_entries(args.top)}, ensure_ascii=False, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    faq = sub.add_parser("faq", help="manage the FAQ cache (import, list, add, remove, test)")
    fs = faq.add_subparsers(dest="faq_command", required=True, metavar="ACTION")

    p = fs.add_parser("import", help="load entries from a CSV (question,answer) or YAML file, all or nothing")
    p.add_argument("file")
    p.add_argument("--replace", action="store_true", help="drop every entry not in the file")
    p.set_defaults(run=_import)

    p = fs.add_parser("export", help="write the FAQ to a .csv or .yaml file")
    p.add_argument("file")
    p.set_defaults(run=_export)

    p = fs.add_parser("list", help="show the entries with their hit counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_list)

    p = fs.add_parser("add", help="add question(s) for an answer (creates the entry if new)")
    p.add_argument("--question", "-q", action="append", required=True, help="a way customers ask it (repeatable)")
    p.add_argument("--answer", "-a", required=True)
    p.add_argument("--tag", action="append", help="optional tag (repeatable)")
    p.add_argument("--id", default=None, help="entry id (default: derived from the answer)")
    p.set_defaults(run=_add)

    p = fs.add_parser("remove", help="remove an entry by id")
    p.add_argument("id")
    p.set_defaults(run=_remove)

    p = fs.add_parser("test", help="which entry would answer a question, with its score, or why none")
    p.add_argument("question")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_test)

    p = fs.add_parser("stats", help="hits, misses, evictions and the most-used entries")
    p.add_argument("--top", type=int, default=10)
    p.set_defaults(run=_stats)
