"""The FAQ store survives restarts and is shared safely by several worker processes."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import faq_cache.matcher as matcher_module
from bot.cli import main as tierbot
from bot.models import Event
from bot.pipeline import SupportBot
from faq_cache.entries import parse_yaml
from faq_cache.learned import LearnedCache
from faq_cache.store import FaqStore
from faq_helpers import SHOP_FAQ_YAML

REPO = Path(__file__).resolve().parent.parent


def test_entries_counters_model_and_learned_answers_survive_a_restart(tmp_path, monkeypatch):
    store = FaqStore(tmp_path / "faq")
    store.import_entries(parse_yaml(SHOP_FAQ_YAML))
    match = store.matcher().match("When are you open?")
    store.count_hit("faq", match.entry_id)
    learned = LearnedCache(tmp_path / "learned", store)
    learned.put("Do you sell gift cards?", "Yes, on our website.")
    learned.close()
    store.close()

    def no_refit(*args, **kwargs):
        raise AssertionError("the stored model should have been reused")

    monkeypatch.setattr(matcher_module.Matcher, "fit", no_refit)
    store = FaqStore(tmp_path / "faq")
    learned = LearnedCache(tmp_path / "learned", store)
    try:
        assert len(store.entries()) == 4
        assert store.matcher().match("When are you open?").entry_id == match.entry_id
        assert store.hit_count(match.entry_id) == 1 and store.stats()["hits_faq"] == 1
        assert learned.get("do you sell gift cards").answer == "Yes, on our website."
    finally:
        learned.close()
        store.close()


WORKER = textwrap.dedent("""
    import sys
    from faq_cache.store import FaqStore
    directory, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = FaqStore(directory)
    for i in range(n):
        store.add([f"question {i} from {name}"], f"answer from {name}")
        store.count_hit("faq", "shared-entry")
        store.count("misses")
    store.close()
    print("done")
""")


def test_two_processes_share_one_store_without_losing_updates(tmp_path):
    directory = tmp_path / "faq"
    FaqStore(directory).close()
    n = 25
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(directory), name, str(n)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    store = FaqStore(directory)
    try:
        entries = {e.answer: e for e in store.entries()}
        assert set(entries) == {"answer from a", "answer from b"}
        assert all(len(e.questions) == n for e in entries.values())  # no add lost to a race
        assert store.hit_count("shared-entry") == 2 * n
        assert store.stats()["misses"] == 2 * n
        assert store.version() == 2 * n
    finally:
        store.close()


def test_a_faq_imported_by_one_process_answers_in_another(tmp_path, base_env):
    faq = tmp_path / "faq.yaml"
    faq.write_text(SHOP_FAQ_YAML, encoding="utf-8")
    env = dict(base_env, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "bot", "faq", "import", str(faq)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    assert "imported 4 entries" in run.stdout

    async def ask(bot, text):
        return await bot.handle(Event(platform="test", conversation_id=text, user_id="u", text=text))

    import asyncio

    async def scenario():
        async with SupportBot.from_env(base_env) as bot:
            assert await bot.services["faq_tier"].ready(60)  # loaded (not fitted: stored) in the background
            reply = await ask(bot, "When are you open?")
            assert reply.tier == "cache" and reply.meta["kind"] == "faq"
            assert reply.text == "We are open Monday to Friday, 9:00-18:00."
            assert (await ask(bot, "hello")).meta["kind"] == "greeting"
            assert (await ask(bot, "hi, where is my order?")).tier != "cache"
            return bot.services["faq"]

    store = asyncio.run(scenario())
    assert store is not None


def test_cli_add_list_test_remove(tmp_path, capsys):
    assert tierbot(["faq", "add", "-q", "Do you ship abroad?", "-q", "Can you deliver to another country?",
                    "-a", "We ship to all EU countries.", "--id", "abroad"]) == 0
    assert tierbot(["faq", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert listed == [{"id": "abroad", "answer": "We ship to all EU countries.", "hits": 0, "tags": [],
                       "questions": ["Do you ship abroad?", "Can you deliver to another country?"]}]
    assert tierbot(["faq", "test", "do you ship abroad"]) == 0
    assert "answered by entry abroad" in capsys.readouterr().out
    assert tierbot(["faq", "test", "what is the capital of peru"]) == 1
    assert "no entry would answer" in capsys.readouterr().out
    assert tierbot(["faq", "test", "hola"]) == 0
    assert "greetings/hello.j2 (lang=es)" in capsys.readouterr().out
    assert tierbot(["faq", "remove", "abroad"]) == 0
    assert tierbot(["faq", "remove", "abroad"]) == 1
    assert "no entry with id 'abroad'" in capsys.readouterr().err


def test_cli_import_of_a_bad_file_says_where_and_imports_nothing(tmp_path, capsys):
    bad = tmp_path / "faq.csv"
    bad.write_text("question,answer\nWhen are you open?,9-18\nWhere are you?,\n", encoding="utf-8")
    assert tierbot(["faq", "import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3: empty answer" in err and "nothing was imported" in err
    assert tierbot(["faq", "list"]) == 0
    assert "the FAQ is empty" in capsys.readouterr().out
