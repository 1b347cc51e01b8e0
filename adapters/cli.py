"""`tierbot serve` (the web server) and `tierbot poll` (Telegram long polling worker)."""
from __future__ import annotations

import argparse
import asyncio

from bot.config import Config

__all__ = ["register", "run_polling"]


async def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    return await serve(Config.from_env(), host=args.host, port=args.port)


async def run_polling(config: Config, stop: asyncio.Event) -> int:
    """Answer Telegram through getUpdates until `stop` is set, then finish in-flight replies."""
    from bot.app import build_bot

    from .durable import DurableStore
    from .slack import attach_desk
    from .telegram import TelegramAdapter

    drain_s = config.get_float("TIERBOT_DRAIN_TIMEOUT_S", 25.0, minimum=0.0)
    async with build_bot(config, serving=True) as bot:
        store = DurableStore.in_dir(config.data_dir)
        telegram = TelegramAdapter.from_config(bot, config, store)
        desk = attach_desk(bot, config)  # handoffs still reach staff in Slack from this worker
        try:
            if desk is not None:
                await desk.start()
            await telegram.start()
            await telegram.poll(stop)
        finally:
            await telegram.stop(timeout=drain_s)
            store.close()
            if desk is not None:
                await desk.aclose()
    return 0


async def _poll(args: argparse.Namespace) -> int:
    from .server import install_stop_signals

    stop = asyncio.Event()
    install_stop_signals(stop)
    return await run_polling(Config.from_env(), stop)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the web server (Telegram webhook, Slack, /api/messages, /metrics)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default: $PORT or 8080)")
    p.set_defaults(run=_serve)

    p = sub.add_parser("poll", help="answer Telegram by long polling (no public URL needed)")
    p.set_defaults(run=_poll)
