"""Prices: the shipped table is dated and sourced, long-prompt tiers charge the right rate on
each side of the threshold, and a bad price file is refused with a clear error."""
from __future__ import annotations

import tomllib

import pytest

from bot import Event
from bot.config import Config, ConfigError
from bot.pricing import DEFAULT_PRICES_PATH, STATUSES, PriceBook
from fakes import llm_servers as F
from fakes.llm_bot import llm_env, make_bot


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook.load()


def test_every_shipped_price_says_when_and_where_it_was_read(book):
    raw = tomllib.loads(DEFAULT_PRICES_PATH.read_text(encoding="utf-8"))
    assert sum(len(models) for models in raw.values()) == len(book.prices)
    for (provider, model), price in book.prices.items():
        assert price.date == "2026-11", (provider, model)
        assert price.source.startswith("https://"), (provider, model)
        assert price.status in STATUSES, (provider, model)
        if price.status in ("deprecated", "retired"):
            assert price.note, f"{provider}/{model} is {price.status} but says neither until when nor why"


@pytest.mark.parametrize("provider, model, tokens_in, tokens_out, usd", [
    # claude-haiku-5-5: $0.10/$0.50 up to 100,000 prompt tokens, $0.50/$2.50 above, for ALL tokens.
    ("claude", "claude-haiku-5-5", 1_000, 200, 1_000 * 0.10e-6 + 200 * 0.50e-6),        # 0.0002
    ("claude", "claude-haiku-5-5", 100_000, 1_000, 0.01 + 0.0005),                       # at the threshold: low rate
    ("claude", "claude-haiku-5-5", 100_001, 1_000, 100_001 * 0.50e-6 + 1_000 * 2.50e-6),  # one token over: 0.0525005
    # gemini-2.5-pro: $1.25/$10 up to 200k, $2.50/$15 above.
    ("gemini", "gemini-2.5-pro", 200_000, 500, 0.25 + 0.005),
    ("gemini", "gemini-2.5-pro", 250_000, 500, 0.625 + 0.0075),
    # Flat prices.
    ("claude", "claude-sonnet-5-5", 300_000, 1_000, 0.6 + 0.01),
    ("groq", "openai/gpt-oss-120b", 1_000_000, 1_000_000, 0.15 + 0.60),
    ("groq", "openai/gpt-oss-20b", 2_000, 400, 2_000 * 0.075e-6 + 400 * 0.30e-6),
    ("gemini", "gemini-3.5-flash-lite", 10_000, 1_000, 0.003 + 0.0025),
])
def test_cost_is_exact_on_both_sides_of_a_long_prompt_threshold(book, provider, model, tokens_in, tokens_out, usd):
    assert book.cost(provider, model, tokens_in, tokens_out) == pytest.approx(usd, rel=1e-12, abs=0)


def test_unknown_model_has_unknown_price_not_zero(book):
    assert book.cost("claude", "claude-from-the-future", 10, 10) is None
    assert book.cost("claude", "claude-from-the-future", 0, 0) == 0.0  # nothing consumed, nothing owed


def _config(tmp_path, text: str) -> Config:
    path = tmp_path / "tierbot.toml"
    path.write_text(text, encoding="utf-8")
    return Config.from_env({"TIERBOT_CONFIG": str(path)}, dotenv=False)


def test_operator_can_add_a_tiered_price_and_it_wins(tmp_path):
    book = PriceBook.load(_config(tmp_path, """
[prices.claude."claude-haiku-5-5"]
input = 0.2
output = 1.0
above_tokens = 1000
input_above = 0.4
output_above = 2.0
"""))
    assert book.cost("claude", "claude-haiku-5-5", 1_000, 10) == pytest.approx(1_000 * 0.2e-6 + 10 * 1.0e-6, rel=1e-12)
    assert book.cost("claude", "claude-haiku-5-5", 1_001, 10) == pytest.approx(1_001 * 0.4e-6 + 10 * 2.0e-6, rel=1e-12)
    assert book.price("groq", "openai/gpt-oss-20b") is not None  # the shipped table is still there


@pytest.mark.parametrize("entry, message", [
    ("input = 1\noutput = 2\nabove_tokens = 1000\ninput_above = 3", "needs above_tokens, input_above and output_above"),
    ("input = 1\noutput = 2\nabove_tokens = 0\ninput_above = 3\noutput_above = 4", "above_tokens must be a whole number"),
    ("input = 1\noutput = 2\nabove_tokens = 1.5\ninput_above = 3\noutput_above = 4", "above_tokens must be a whole number"),
    ("input = 1\noutput = -2", "output must be a finite price"),
    ("input = 'cheap'\noutput = 2", "input must be a number"),
    ("input = 1", "missing 'output'"),
    ("input = 1\noutput = 2\nstatus = 'sunset'", "status must be one of"),
])
def test_bad_operator_price_is_refused_naming_the_entry(tmp_path, entry, message):
    with pytest.raises(ConfigError, match=message) as e:
        PriceBook.load(_config(tmp_path, f'[prices.groq."my-model"]\n{entry}\n'))
    assert "groq.my-model" in str(e.value)


async def test_a_long_prompt_reply_is_charged_the_long_prompt_rate(tmp_path):
    """End to end: the fake Claude reports 100,001 input tokens; the attempt's cost uses the
    above-100k rate for input and output alike."""
    async with F.FakeProviders() as fp:
        fp.claude.default = F.ok("Sure.", input_tokens=100_001, output_tokens=40)
        env = llm_env(fp, tmp_path, chain="claude", TIERBOT_CLAUDE_MODELS="claude-haiku-5-5")
        async with make_bot(env) as bot:
            reply = await bot.handle(Event(platform="test", conversation_id="c1", user_id="u1", text="hi"))
    assert reply.provider == "claude" and reply.model == "claude-haiku-5-5"
    assert reply.attempts[0].cost_usd == pytest.approx(100_001 * 0.50e-6 + 40 * 2.50e-6, rel=1e-12)
