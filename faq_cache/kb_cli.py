"""`tierbot kb import|list|remove|test`: the operator's knowledge base (help-centre pages).

Pages are split into passages and given to the LLM, with the FAQ entries, as reference
material for messages the cache does not answer (see faq_cache/retrieval.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot.config import Config
from bot.llm.reference import RagSettings, build_reference

from .documents import SUFFIXES, KnowledgeImportError, load_document
from .plugin import open_store
from .retrieval import KnowledgeRetriever
from .settings import FaqSettings
from .store import FaqStore

__all__ = ["register"]


def _open() -> tuple[Config, FaqStore]:
    config = Config.from_env()
    return config, open_store(FaqSettings.from_config(config))


def expand(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files to import: each file as given, each directory's Markdown/text/HTML files (all
    levels, sorted). A directory with none of them is an error naming it."""
    files: list[Path] = []
    errors: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not found:
                errors.append(f"{path}: no {', '.join(sorted(SUFFIXES))} files in this directory")
            files += found
        else:
            files.append(path)
    return files, errors


async def _import(args: argparse.Namespace) -> int:
    paths, errors = expand(args.paths)
    documents = []
    for path in paths:  # read and split every file before anything is stored
        try:
            documents.append(load_document(path))
        except KnowledgeImportError as e:
            errors.append(str(e))
    if errors:
        for e in errors:
            print(f"tierbot kb import: {e}", file=sys.stderr)
        print("nothing was imported", file=sys.stderr)
        return 1
    _, store = _open()
    with store:
        outcome = store.knowledge.replace(documents)
        store.knowledge.index()  # fit once here so worker processes load it ready-made
        for doc in documents:
            print(f"{outcome[doc.key]:9} {doc.id}  {len(doc.passages):3} passages  {doc.title!r}  ({doc.key})")
        total = sum(d["passages"] for d in store.knowledge.documents())
        print(f"{len(store.knowledge.documents())} documents, {total} passages in the knowledge base")
    return 0


async def _list(args: argparse.Namespace) -> int:
    _, store = _open()
    with store:
        docs = store.knowledge.documents()
        if args.json:
            out = [dict(d, passages=[p.to_dict() for p in store.knowledge.passages(d["key"])]) if args.passages
                   else d for d in docs]
            print(json.dumps(out, ensure_ascii=False, indent=2))
            return 0
        if not docs:
            print("the knowledge base is empty; add pages with `tierbot kb import PATH...` "
                  "(Markdown, plain text or HTML)")
        for d in docs:
            print(f"{d['id']}  {d['passages']:3} passages  {d['title']!r}  ({d['key']})")
            if args.passages:
                for p in store.knowledge.passages(d["key"]):
                    text = " ".join(p.text.split())
                    print(f"    kb:{p.id}  {p.title!r}: {text[:80] + '...' if len(text) > 80 else text}")
    return 0


async def _remove(args: argparse.Namespace) -> int:
    _, store = _open()
    with store:
        key = store.knowledge.find_document(args.document)
        if key is None or not store.knowledge.remove(key):
            print(f"tierbot kb remove: no document {args.document!r} (see `tierbot kb list`)", file=sys.stderr)
            return 1
        store.knowledge.index()
    print(f"removed {key}")
    return 0


async def _test(args: argparse.Namespace) -> int:
    config, store = _open()
    with store:
        rag = RagSettings.from_config(config)
        k = args.k if args.k is not None else rag.passages
        passages = KnowledgeRetriever(store).retrieve(args.question, k, wait=True)
        reference = build_reference(passages, RagSettings(passages=max(k, 1), tokens=rag.tokens))
    given = {p.id for p in reference.passages} if reference else set()
    if args.json:
        print(json.dumps({"question": args.question, "tokens": reference.tokens if reference else 0,
                          "passages": [{"id": p.id, "title": p.title, "score": round(p.score, 4),
                                        "given": p.id in given} for p in passages]},
                         ensure_ascii=False, indent=2))
        return 0 if passages else 1
    if not passages:
        print("nothing retrieved: the FAQ and the knowledge base are empty, or share no words with the question")
        return 1
    print(f"the LLM would be given {len(given)} of these ({reference.tokens if reference else 0} tokens, "
          f"budget TIERBOT_RAG_TOKENS={rag.tokens}):")
    for i, p in enumerate(passages, 1):
        text = " ".join(p.text.split())
        mark = "" if p.id in given else "  (left out: over the token budget)"
        print(f"{i}. {p.id}  score={p.score:.3f}  {p.title!r}{mark}\n   {text[:100] + '...' if len(text) > 100 else text}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    kb = sub.add_parser("kb", help="manage the knowledge base the LLM answers from (import, list, remove, test)")
    ks = kb.add_subparsers(dest="kb_command", required=True, metavar="ACTION")

    p = ks.add_parser("import", help="add or replace pages (.md, .txt, .html; a directory: all of them inside), "
                                     "all files or none")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(run=_import)

    p = ks.add_parser("list", help="show the imported documents")
    p.add_argument("--passages", action="store_true", help="show each document's passages too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_list)

    p = ks.add_parser("remove", help="remove a document (by path or id) and its passages")
    p.add_argument("document")
    p.set_defaults(run=_remove)

    p = ks.add_parser("test", help="which FAQ entries and passages a question retrieves")
    p.add_argument("question")
    p.add_argument("-k", type=int, default=None, help="how many to show (default TIERBOT_RAG_PASSAGES)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_test)
