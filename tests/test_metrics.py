"""/metrics: what operators scrape — counts, failovers, breakers, latency, tokens, cost."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bot.llm.breaker import BreakerBoard
from bot.metrics import BotMetrics
from bot.models import Attempt, Reply
from fakes.telegram_api import FakeTelegram, text_update
from telegram_harness import make_bot, make_config, post_update, running


class FailoverTier:
    """Like the LLM chain: groq is rate-limited, gemini answers with tokens and a cost."""

    name = "llm"

    async def answer(self, event, turn):
        turn.record(Attempt("groq", "llama-3.3-70b-versatile", "rate_limited", latency_ms=3))
        turn.record(Attempt("gemini", "gemini-2.5-flash", "ok", latency_ms=40, input_tokens=120,
                            output_tokens=30, cost_usd=0.0015))
        turn.record(Attempt("claude", "claude-x", "skipped:budget"))
        return Reply(text="answer", tier="llm", provider="gemini", model="gemini-2.5-flash")


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_page_counts_replies_failovers_tokens_cost_and_breakers(tmp_path):
    board = BreakerBoard(threshold=1, cooldown=60)
    board.get("gemini", "gemini-2.5-flash")
    async with FakeTelegram() as tg:
        config = make_config(tg.base_url, tmp_path / "data", TELEGRAM_STREAM_DRAFTS="false")
        bot = make_bot(config, FailoverTier(), services={"breakers": board})
        metrics = BotMetrics(bot.services)
        bot.services["metrics"] = metrics
        bot.listeners.append(metrics)
        async with running(bot, config) as (client, server):
            for i in (1, 2):
                await post_update(client, text_update(i, "secret order 12345 for ann@example.com"))
            await post_update(client, b"{broken")
            await tg.wait_for(lambda f: len(f.texts()) == 2)
            await server.telegram.outbox.wait_idle(2.0)  # delivery is counted once Telegram has said ok
            resp = await client.get("/metrics")
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    s = samples(text)
    assert s[("tierbot_messages_total", (("platform", "telegram"), ("provider", "gemini"), ("tier", "llm")))] == 2
    assert s[("tierbot_failovers_total", (("provider", "groq"), ("reason", "rate_limited")))] == 2
    assert s[("tierbot_failovers_total", (("provider", "claude"), ("reason", "skipped:budget")))] == 2
    assert s[("tierbot_tokens_total", (("direction", "input"), ("model", "gemini-2.5-flash"),
                                       ("provider", "gemini")))] == 240
    assert abs(s[("tierbot_cost_usd_total", (("model", "gemini-2.5-flash"), ("provider", "gemini")))] - 0.003) < 1e-9
    assert s[("tierbot_reply_latency_seconds_count", (("platform", "telegram"), ("tier", "llm")))] == 2
    assert s[("tierbot_webhook_requests_total", (("platform", "telegram"), ("status", "200")))] == 2
    assert s[("tierbot_webhook_requests_total", (("platform", "telegram"), ("status", "400")))] == 1
    assert s[("tierbot_delivery_latency_seconds_count", (("platform", "telegram"),))] == 2
    assert s[("tierbot_updates_in_progress", (("platform", "telegram"),))] == 0  # all answered
    assert s[("tierbot_breaker_state", (("model", "gemini-2.5-flash"), ("provider", "gemini"),
                                        ("state", "closed")))] == 1
    assert s[("tierbot_breaker_state", (("model", "gemini-2.5-flash"), ("provider", "gemini"),
                                        ("state", "open")))] == 0
    # nothing about the customer leaks into labels
    assert "12345" not in text and "ann@example.com" not in text and 'conversation' not in text


async def test_breaker_state_follows_the_board_at_scrape_time():
    board = BreakerBoard(threshold=1, cooldown=60)
    breaker = board.get("groq", "m")
    metrics = BotMetrics({"breakers": board})

    def state_of() -> str:
        s = samples(metrics.render().decode())
        [state] = [dict(k[1])["state"] for k, v in s.items() if k[0] == "tierbot_breaker_state" and v == 1]
        return state

    assert state_of() == "closed"
    breaker.disable("auth")
    assert state_of() == "disabled"


async def test_unknown_price_is_counted_not_reported_as_zero():
    metrics = BotMetrics()

    class E:
        platform = "api"

    reply = Reply(text="x", tier="llm", provider="p", model="m",
                  attempts=[Attempt("p", "m", "ok", input_tokens=5, output_tokens=5, cost_usd=None)])
    await metrics.on_reply(E(), reply, None)
    s = samples(metrics.render().decode())
    assert s[("tierbot_cost_unknown_attempts_total", (("model", "m"), ("provider", "p")))] == 1
    assert ("tierbot_cost_usd_total", (("model", "m"), ("provider", "p"))) not in s


def test_metrics_plugin_gives_each_bot_its_own_registry(tmp_path):
    from bot.app import build_bot
    from bot.config import Config

    config = Config.from_env({"TIERBOT_DATA_DIR": str(tmp_path)}, dotenv=False)
    a = build_bot(config, plugins=("bot.metrics:install",))
    b = build_bot(config, plugins=("bot.metrics:install",))
    assert a.services["metrics"] is not b.services["metrics"]
    assert a.services["metrics"] in a.listeners


async def test_backlog_gauge_shows_updates_waiting_for_an_answer(tmp_path):
    import asyncio

    from telegram_harness import EchoTier

    async with FakeTelegram() as tg:
        config = make_config(tg.base_url, tmp_path / "data")
        slow = EchoTier()
        slow.gate = asyncio.Event()
        async with running(make_bot(config, slow), config) as (client, _):
            for i in (1, 2, 3):
                await post_update(client, text_update(i, f"q{i}", chat_id=10 + i))
            s = samples(await (await client.get("/metrics")).text())
            assert s[("tierbot_updates_in_progress", (("platform", "telegram"),))] == 3
            slow.gate.set()
            await tg.wait_for(lambda f: len(f.texts()) == 3)
