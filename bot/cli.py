"""The `tierbot` command line. `chat` and `ask` live here; other subsystems add their
own subcommands through `COMMANDS` (each a `register(subparsers)` function)."""
from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import uuid
from typing import Callable

from .config import ConfigError
from .logs import setup_logging
from .models import Event, Reply, Suggestion
from .storage.postgres.migrations import SchemaError
from .storage.settings import StorageUnavailable

__all__ = ["main", "describe", "numbered", "sources_line", "COMMANDS"]

# "module:function" registering extra subcommands.
COMMANDS: tuple[str, ...] = (
    "bot.llm.check:register",
    "bot.report.cli:register",
    "adapters.cli:register",
    "faq_cache.cli:register",
    "bot.storage.cli:register",
    "faq_cache.kb_cli:register",
)


# How long `tierbot ask` lets the FAQ model load or fit before sending its one message.
ASK_FAQ_LOAD_S = 30.0


def describe(reply: Reply) -> str:
    """One line saying who answered, what it cost and what failed on the way."""
    parts = [f"tier={reply.tier}"]
    if reply.provider:
        parts.append(f"provider={reply.provider} model={reply.model}")
    cost = "unknown" if reply.cost_usd is None else f"${reply.cost_usd:.6f}"
    parts.append(f"tokens={reply.input_tokens}+{reply.output_tokens} cost={cost}")
    parts.append(f"latency={reply.latency_ms:.0f}ms")
    failed = [f"{a.provider}/{a.model}:{a.outcome}" if a.model else f"{a.provider}:{a.outcome}"
              for a in reply.attempts if a.outcome != "ok"]
    if failed:
        parts.append("failed=" + ",".join(failed))
    return "[" + " ".join(parts) + "]"


def numbered(suggestions: tuple[Suggestion, ...], indent: str = "     ") -> str:
    """"Did you mean…?" suggestions as a numbered list (console front ends)."""
    return "\n".join(f"{indent}{i}. {s.question}" for i, s in enumerate(suggestions, 1))


def _number_picked(offered: tuple[Suggestion, ...], text: str) -> Suggestion | None:
    """The suggestion a number typed after a "Did you mean…?" list picks; None when `text`
    is not one of the list's numbers (then it is an ordinary message, e.g. an order number)."""
    if text.isdigit() and 1 <= int(text) <= len(offered):
        return offered[int(text) - 1]
    return None
def sources_line(reply: Reply) -> str:
    """What the LLM was given to answer from: `sources: faq:ab12 "Title"; kb:cd34 "Title"`."""
    return "sources: " + "; ".join(f"{s.id} {s.title!r}" for s in reply.sources)


async def _chat(args: argparse.Namespace) -> int:
    from .pipeline import SupportBot

    conversation = f"console-{uuid.uuid4().hex[:8]}"
    async with SupportBot.from_env() as bot:
        print("tierbot chat — type a message, Ctrl-D or /quit to leave.", flush=True)
        loop = asyncio.get_running_loop()
        offered: tuple[Suggestion, ...] = ()
        while True:
            print("you> ", end="", flush=True)
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or line.strip() in ("/quit", "/exit"):
                print()
                return 0
            text = line.strip()
            if not text:
                continue
            event = Event(platform="console", conversation_id=conversation, user_id="console",
                          user_name="you", text=text)
            chosen = _number_picked(offered, text)
            if chosen is not None:
                suggestions = bot.services.get("faq_suggestions")
                current = suggestions.lookup(chosen.entry_id) if suggestions is not None else None  # type: ignore[attr-defined]
                if current is None:  # removed from the FAQ since it was offered
                    print("bot> That suggestion is no longer in our FAQ; please ask in your own words.", flush=True)
                    offered = ()
                    continue
                event.text, event.pick = current.question, current.entry_id
            reply = await bot.handle(event)
            offered = reply.suggestions
            listed = f"\n{numbered(offered)}\n     (type a number to pick one)" if offered else ""
            print(f"bot> {reply.text}{listed}\n     {describe(reply)}", flush=True)
            if reply.sources:
                print(f"     {sources_line(reply)}", flush=True)


async def _ask(args: argparse.Namespace) -> int:
    from .pipeline import SupportBot

    async with SupportBot.from_env() as bot:
        # A one-shot command: let the FAQ model load first (replies themselves never wait for it).
        faq = bot.services.get("faq_tier")
        if faq is not None:
            await faq.ready(ASK_FAQ_LOAD_S)
        event = Event(platform="console", conversation_id=args.conversation or f"ask-{uuid.uuid4().hex[:8]}",
                      user_id="console", text=args.question, route=args.route)
        reply = await bot.handle(event)
    if args.json:
        print(json.dumps(reply.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(reply.text)
        if reply.suggestions:
            print(numbered(reply.suggestions, indent="  "))
        print(describe(reply), file=sys.stderr)
        if reply.sources:
            print(sources_line(reply), file=sys.stderr)
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierbot", description="A customer-support bot that always answers.")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("chat", help="talk to the bot in the terminal, through the whole pipeline")
    p.set_defaults(run=_chat)

    p = sub.add_parser("ask", help="send one message and print the reply")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print the Reply fields as JSON")
    p.add_argument("--conversation", default=None, help="conversation id (keeps context between calls)")
    p.add_argument("--route", default=None, help="named chain to use (default: customer)")
    p.set_defaults(run=_ask)

    for spec in COMMANDS:
        module, _, func = spec.partition(":")
        register: Callable[[argparse._SubParsersAction], None] = getattr(importlib.import_module(module), func)
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return asyncio.run(args.run(args)) or 0
    except ConfigError as e:
        print(f"tierbot: configuration error: {e}", file=sys.stderr)
        return 2
    except (StorageUnavailable, SchemaError) as e:
        print(f"tierbot: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
