"""The groq SDK on its aiohttp backend (the default, cheaper in CPU) must behave exactly as
on its httpx backend: same answers, streamed or not, and each failure classified the same
(a refused connection is "connection", not "timeout": httpx-aiohttp reports every aiohttp
connection error as httpx.ConnectTimeout)."""
from __future__ import annotations

import pytest

from bot import Event
from bot.config import Config, ConfigError
from bot.llm.routes import LLMSettings
from fakes import llm_servers as F
from fakes.llm_bot import llm_env, make_bot

TRANSPORTS = ("aiohttp", "httpx")
FAULTS = {  # behaviour (None: connection refused) -> outcome of groq's attempt
    "refused": (None, "connection"),
    "reset": (F.reset, "connection"),
    "black_hole": (F.black_hole, "timeout"),
    "malformed": (F.malformed, "malformed"),
    "rate_limited": (lambda: F.rate_limited(retry_after=30), "rate_limited"),
}


@pytest.fixture
async def fp():
    async with F.FakeProviders() as f:
        yield f


def ev(conv: str = "c1") -> Event:
    return Event(platform="test", conversation_id=conv, user_id="u1", text="Where is my order?")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_answers_alike_streamed_or_not(fp, tmp_path, transport):
    fp.groq.default = F.ok("Your order ships tomorrow.", input_tokens=90, output_tokens=5)
    async with make_bot(llm_env(fp, tmp_path, TIERBOT_GROQ_TRANSPORT=transport)) as bot:
        plain = await bot.handle(ev("c1"))
        chunks, final = [], None
        async for item in bot.stream(ev("c2")):
            if isinstance(item, str):
                chunks.append(item)
            else:
                final = item
    assert (plain.provider, plain.text, plain.input_tokens, plain.output_tokens) == \
        ("groq", "Your order ships tomorrow.", 90, 5)
    assert final is not None and final.provider == "groq" and final.text == "".join(chunks) == plain.text
    assert [r.stream for r in fp.groq.requests] == [False, True]


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_failures_classified_alike(fp, tmp_path, transport, fault):
    make, expected = FAULTS[fault]
    if make is not None:
        fp.groq.default = make()
    env = llm_env(fp, tmp_path, refused={"groq"} if make is None else set(), attempt=0.4,
                  TIERBOT_GROQ_TRANSPORT=transport)
    async with make_bot(env) as bot:
        reply = await bot.handle(ev())
    assert reply.attempts[0].provider == "groq" and reply.attempts[0].outcome == expected, reply.attempts
    assert reply.provider == "gemini"


def test_unknown_transport_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="TIERBOT_GROQ_TRANSPORT"):
        LLMSettings.from_config(Config.from_env({"TIERBOT_GROQ_TRANSPORT": "curl"}))


# -- the stream's events, read without one SDK model per chunk ------------------------------
async def _lines(*lines: str):
    for line in lines:
        yield line


async def test_stream_events_are_read_as_the_sdk_reads_them():
    import json

    from bot.llm.providers.groq import sse_data

    chunk = {"choices": [{"delta": {"content": "Hi"}, "finish_reason": None}]}
    lines = [": keep-alive", "", f"data: {json.dumps(chunk)}", "", "id: 7", "data: {\"choices\":",
             "data: []}", "", "data: [DONE]", "", f"data: {json.dumps(chunk)}", ""]
    got = [d async for d in sse_data(_lines(*lines), request=None)]
    assert got == [chunk, {"choices": []}]  # a multi-line event is joined; nothing after [DONE]


async def test_an_error_inside_the_stream_raises_the_sdks_api_error():
    import groq
    import httpx

    from bot.llm.providers.groq import sse_data

    request = httpx.Request("POST", "http://127.0.0.1/openai/v1/chat/completions")
    lines = ['data: {"choices": [{"delta": {"content": "Our"}}]}', "",
             'data: {"error": {"message": "Service Unavailable", "type": "internal_server_error"}}', ""]
    seen = []
    with pytest.raises(groq.APIError, match="Service Unavailable") as e:
        async for d in sse_data(_lines(*lines), request):
            seen.append(d)
    assert len(seen) == 1 and e.value.body == {"message": "Service Unavailable", "type": "internal_server_error"}
