"""OpenAI-compatible endpoints declared in the config file under a name of the operator's
choosing (a self-hosted vLLM/Ollama, Together, Fireworks...), used in `TIERBOT_CHAIN` by
that name, through the real `openai` SDK over real HTTP against a plain OpenAI-compatible
fake; bad declarations are refused with an error naming the entry."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from bot import Attachment, Event
from bot.config import Config, ConfigError
from bot.llm.check import run_check
from bot.llm.routes import LLMSettings
from fakes import llm_servers as F
from fakes.llm_bot import MODELS, llm_env, make_bot

LOCAL_MODEL = "Qwen/Qwen3-8B"
LOCAL_KEY = "local-vllm-test-key-0123456789"


def ev(text: str = "Where is my order?", conv: str = "c1", **kw) -> Event:
    return Event(platform="test", conversation_id=conv, user_id="u1", text=text, **kw)


@pytest.fixture
async def fp():
    async with F.FakeProviders() as f:
        yield f


@pytest.fixture
async def local():
    server = F.FakeOpenAICompat()
    await server.start()
    yield server
    await server.stop()


def write_config(tmp_path: Path, text: str, name: str = "tierbot.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def local_toml(url: str, extra: str = "") -> str:
    return (f'[llm.endpoints.local-vllm]\nbase_url = "{url}/v1"\nkey_env = "LOCAL_VLLM_KEY"\n'
            f'models = ["{LOCAL_MODEL}"]\n{extra}')


def env_with(fp, tmp_path, config: str, chain: str = "local-vllm,groq", **extra: str) -> dict[str, str]:
    return llm_env(fp, tmp_path, chain=chain, TIERBOT_CONFIG=config, LOCAL_VLLM_KEY=LOCAL_KEY, **extra)


@pytest.mark.parametrize("streamed", [False, True], ids=["handle", "stream"])
async def test_declared_endpoint_answers_by_its_name_in_the_chain(fp, local, tmp_path, streamed):
    local.default = F.ok("Your parcel left our warehouse.")
    config = write_config(tmp_path, local_toml(local.url, "\n[prices.local-vllm.\"Qwen/Qwen3-8B\"]\ninput = 0.10\n"
                                                         "output = 0.30\n"))
    async with make_bot(env_with(fp, tmp_path, config)) as bot:
        if streamed:
            items = [i async for i in bot.stream(ev())]
            reply = items[-1]
            assert "".join(items[:-1]) == reply.text
        else:
            reply = await bot.handle(ev())
    assert (reply.provider, reply.model, reply.text) == ("local-vllm", LOCAL_MODEL, "Your parcel left our warehouse.")
    assert reply.cost_usd == pytest.approx((20 * 0.10 + 5 * 0.30) / 1e6)  # its [prices] entry
    req = local.requests[0]
    assert req.path == "/v1/chat/completions" and req.model == LOCAL_MODEL
    assert {k.lower(): v for k, v in req.headers.items()}["authorization"] == f"Bearer {LOCAL_KEY}"
    assert not fp.groq.requests


async def test_declared_endpoint_fails_over_to_the_next_link(fp, local, tmp_path):
    local.default = F.overloaded()
    config = write_config(tmp_path, local_toml(local.url))
    async with make_bot(env_with(fp, tmp_path, config)) as bot:
        reply = await bot.handle(ev())
    assert [(a.provider, a.outcome) for a in reply.attempts] == [("local-vllm", "overloaded"), ("groq", "ok")]


async def test_unknown_price_stays_price_unknown(fp, local, tmp_path):
    config = write_config(tmp_path, local_toml(local.url))
    async with make_bot(env_with(fp, tmp_path, config)) as bot:
        reply = await bot.handle(ev())
    assert reply.provider == "local-vllm" and reply.cost_usd is None


async def test_yaml_declaration_without_a_key_and_models_from_the_environment(fp, local, tmp_path):
    config = write_config(tmp_path, json.dumps({"llm": {"endpoints": {"ollama": {
        "base_url": f"{local.url}/v1", "models": ["llama3.2"], "headers": {"X-Team": "support"}}}}}),
        name="tierbot.yaml")
    env = llm_env(fp, tmp_path, chain="ollama", TIERBOT_CONFIG=config, TIERBOT_OLLAMA_MODELS="qwen3:8b,llama3.2")
    async with make_bot(env) as bot:
        reply = await bot.handle(ev())
    assert (reply.provider, reply.model) == ("ollama", "qwen3:8b")
    headers = {k.lower(): v for k, v in local.requests[0].headers.items()}
    assert headers["authorization"] == "Bearer no-key" and headers["x-team"] == "support"


async def test_declared_key_variable_unset_skips_it_with_one_clear_line(fp, local, tmp_path, caplog):
    caplog.set_level(logging.INFO, "tierbot.llm")
    config = write_config(tmp_path, local_toml(local.url))
    env = env_with(fp, tmp_path, config)
    del env["LOCAL_VLLM_KEY"]
    async with make_bot(env) as bot:
        reply = await bot.handle(ev())
    assert reply.provider == "groq" and not local.requests
    lines = [r.getMessage() for r in caplog.records if "LOCAL_VLLM_KEY" in r.getMessage()]
    assert lines == ['provider=local-vllm status=skipped reason="LOCAL_VLLM_KEY is not set"']


@pytest.mark.parametrize("vision, used", [("false", False), ("true", True)])
async def test_vision_flag_decides_whether_images_go_to_it(fp, local, tmp_path, vision, used):
    config = write_config(tmp_path, local_toml(local.url, f"vision = {vision}\n"))
    image = Attachment(kind="image", data=b"\x89PNG fake", mime_type="image/png")
    async with make_bot(env_with(fp, tmp_path, config, chain="local-vllm,gemini")) as bot:
        reply = await bot.handle(ev("What is on this photo?", attachments=(image,)))
    assert reply.provider == ("local-vllm" if used else "gemini")
    if used:
        content = local.requests[0].body["messages"][-1]["content"]
        assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    else:
        assert reply.attempts[0].outcome == "skipped:no_vision" and not local.requests


def test_paid_flag_is_kept_for_the_chain(tmp_path):
    config = write_config(tmp_path, local_toml("http://127.0.0.1:9", "paid = true\n")
                          + '[llm.endpoints.free]\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["m"]\n')
    settings = LLMSettings.from_config(Config.from_env({"TIERBOT_CONFIG": config}, dotenv=False))
    assert "local-vllm" in settings.paid and "free" not in settings.paid
    assert settings.endpoints["free"].paid is False


BAD = [
    ('[llm.endpoints.x]\nmodels = ["m"]\n', "base_url is required"),
    ('[llm.endpoints.x]\nbase_url = "ftp://h/v1"\nmodels = ["m"]\n', "http:// or https://"),
    ('[llm.endpoints.x]\nbase_url = "https://user:sk-secret@h/v1"\nmodels = ["m"]\n', "must not carry credentials"),
    ('[llm.endpoints.x]\nbase_url = "https://h/v1"\n', "models is required"),
    ('[llm.endpoints.x]\nbase_url = "https://h/v1"\nmodels = []\n', "at least one model"),
    ('[llm.endpoints.x]\nbase_url = "https://h/v1"\nmodels = [1]\n', "list of model names"),
    ('[llm.endpoints.x]\nbase_url = "https://h/v1"\nmodels = ["m"]\nmodles = ["n"]\n', "unknown setting 'modles'"),
    ('[llm.endpoints.x]\nbase_url = "https://h/v1"\nmodels = ["m"]\nkey_env = "not a var"\n', "key_env must be"),
    ('[llm.endpoints.x]\nbase_url = "https://h/v1"\nmodels = ["m"]\nvision = "yes"\n', "vision must be"),
    ('[llm.endpoints.x]\nbase_url = "https://h/v1"\nmodels = ["m"]\npaid = "no"\n', "paid must be"),
    ('[llm.endpoints.x]\nbase_url = "https://h/v1"\nmodels = ["m"]\nheaders = ["a"]\n', "headers must be"),
    ('[llm.endpoints.groq]\nbase_url = "https://h/v1"\nmodels = ["m"]\n', "already a provider"),
    ('[llm.endpoints.Big]\nbase_url = "https://h/v1"\nmodels = ["m"]\n', "lower-case"),
    ('[llm]\nendpoints = "x"\n', "must be a table"),
    ('[llm.endpoints.a-b]\nbase_url = "https://h/v1"\nmodels = ["m"]\n'
     '[llm.endpoints.a_b]\nbase_url = "https://h/v1"\nmodels = ["m"]\n', "are those of 'a-b'"),
    ('[llm.endpoints]\nx = "https://h/v1"\n', "must be a table with base_url"),
]


@pytest.mark.parametrize("toml, message", BAD, ids=[m for _, m in BAD])
async def test_bad_declaration_is_refused_naming_the_entry_and_nothing_starts(fp, tmp_path, toml, message):
    config = write_config(tmp_path, toml)
    env = llm_env(fp, tmp_path, chain="groq", TIERBOT_CONFIG=config)
    with pytest.raises(ConfigError, match=message) as e:
        make_bot(env)
    assert "[llm.endpoints" in str(e.value)
    assert "sk-secret" not in str(e.value)
    assert not fp.groq.requests


def test_chain_naming_an_undeclared_endpoint_says_how_to_declare_it(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown provider 'together'.*\[llm.endpoints.together\]"):
        LLMSettings.from_config(Config.from_env({"TIERBOT_CHAIN": "together,groq"}, dotenv=False))


async def test_check_pings_a_declared_endpoint(fp, local, tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path, local_toml(local.url, "paid = true\n"))
    for k, v in env_with(fp, tmp_path, config, chain="local-vllm,groq").items():
        monkeypatch.setenv(k, v)
    code = await run_check(argparse.Namespace(timeout=2.0))
    out = capsys.readouterr().out
    assert code == 0 and "chain: local-vllm -> groq" in out
    assert f"local-vllm: key LOCAL_VLLM_KEY=loca" in out and LOCAL_KEY not in out
    assert f"base_url={local.url}/v1 models={LOCAL_MODEL} paid" in out
    assert f"local-vllm/{LOCAL_MODEL}: ok" in out and "cost=price unknown" in out
    assert f"groq/{MODELS['groq']}: ok" in out and len(local.requests) == 1


async def test_unreachable_declared_endpoint_is_a_connection_failure_and_the_chain_moves_on(fp, tmp_path):
    config = write_config(tmp_path, local_toml(fp.dead_url))
    async with make_bot(env_with(fp, tmp_path, config)) as bot:
        handled = await bot.handle(ev(conv="a"))
        streamed = [i async for i in bot.stream(ev(conv="b"))][-1]
    assert handled.attempts[0].outcome == "connection" and handled.provider == "groq"
    assert streamed.attempts[0].outcome in ("connection", "skipped:breaker_open") and streamed.provider == "groq"


async def test_a_named_route_can_send_to_a_declared_endpoint_outside_the_chain(fp, local, tmp_path):
    config = write_config(tmp_path, local_toml(local.url))
    env = env_with(fp, tmp_path, config, chain="groq", TIERBOT_ROUTE_STAFF=f"local-vllm:{LOCAL_MODEL}-big,groq")
    async with make_bot(env) as bot:
        staff = await bot.handle(ev(conv="s", route="staff"))
        customer = await bot.handle(ev(conv="c"))
    assert (staff.provider, staff.model) == ("local-vllm", f"{LOCAL_MODEL}-big")
    assert customer.provider == "groq" and len(local.requests) == 1
