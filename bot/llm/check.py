"""`tierbot check`: the configured chain, which keys are present (masked), and a tiny
live request to each provider with its latency. Exits non-zero when none answers."""
from __future__ import annotations

import argparse
import asyncio
import time

from ..secrets import mask
from .errors import MODEL_GONE, ProviderError
from .providers.base import Message, Request
from .routes import BASE_URL_VARS, LLMSettings, models_var

__all__ = ["register", "run_check"]

# Room for a reasoning model's thinking (gpt-oss, Claude Haiku 5.5, Gemini 3.x count it in the
# output limit): with 5 tokens a healthy reasoning model would answer nothing and look broken.
PING = Request(system="You are a health check. Reply with the single word: pong.",
               messages=(Message("user", "ping"),), max_tokens=256)


async def run_check(args: argparse.Namespace) -> int:
    from ..config import Config
    from ..pricing import PriceBook
    from ..profile import SAMPLE_WARNING, uses_sample_profile
    from .plugin import build_providers

    config = Config.from_env()
    if uses_sample_profile(config):  # first, so nobody misses it
        print(f"WARNING: {SAMPLE_WARNING}")
    from ..storage.check import check_storage

    storage_ok = await check_storage(config)
    prices = PriceBook.load(config)
    settings = LLMSettings.from_config(config)
    timeout = args.timeout
    from faq_cache.settings import FaqSettings, describe_matcher

    print(f"faq matcher: {describe_matcher(FaqSettings.from_config(config))}")
    print(f"chain: {' -> '.join(settings.chain)}")
    providers = build_providers(config, settings, announce=False)
    answered = 0
    for name in settings.in_use:
        key_var = settings.key_var(name)
        models = settings.models[name]
        endpoint = settings.endpoints.get(name)
        url = endpoint.base_url if endpoint else (config.get(BASE_URL_VARS[name]) or "(default)")
        key = f"{key_var}={mask(config.get(key_var))}" if key_var else "none (declared without key_env)"
        paid = " paid" if name in settings.paid else ""
        print(f"{name}: key {key} base_url={url} models={','.join(models)}{paid}")
        for m in models:  # warn before a retirement breaks the chain (prices.toml knows the status)
            price = prices.price(name, m)
            if price is not None and price.status in ("deprecated", "retired"):
                print(f"  {name}/{m}: {price.status.upper()}: {price.note or 'see ' + price.source}")
        provider = providers.get(name)
        if provider is None:
            print(f"  {name}: skipped (no key)")
            continue
        model = models[0]
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                completion = await provider.complete(model, PING, timeout)
            ms = (time.perf_counter() - t0) * 1000
            answered += 1
            cost = prices.cost(name, model, completion.input_tokens, completion.output_tokens)
            if completion.cost_usd is not None:
                cost_text = f"${completion.cost_usd:.6f} (reported)"
            else:
                cost_text = "price unknown" if cost is None else f"${cost:.6f}"
            served = f" answered_by={completion.model}" if completion.model and completion.model != model else ""
            served += f" upstream={completion.upstream}" if completion.upstream else ""
            print(f"  {name}/{model}: ok {ms:.0f} ms tokens={completion.input_tokens}+{completion.output_tokens} "
                  f"cost={cost_text}{served}")
        except ProviderError as e:
            ms = (time.perf_counter() - t0) * 1000
            extra = f" retry_after={e.retry_after:g}s" if e.retry_after is not None else ""
            print(f"  {name}/{model}: FAILED outcome={e.outcome} ({e.detail}){extra} after {ms:.0f} ms")
            if e.outcome == MODEL_GONE:
                print(f"  {name}/{model}: the provider no longer serves this model (retired or unknown id): "
                      f"set {models_var(name)} to a current model")
        except TimeoutError:
            print(f"  {name}/{model}: FAILED outcome=timeout (no answer within {timeout:g}s)")
    for p in providers.values():
        await p.aclose()
    if answered == 0:
        print("no provider answered: the bot will answer from the cache and templates only")
        return 1
    print(f"{answered} of {len(settings.in_use)} providers answered")
    return 0 if storage_ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="show the LLM chain, keys (masked) and a live request to each provider")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each provider (default 10)")
    p.set_defaults(run=run_check)
