"""The semantic FAQ matcher: a local int8 ONNX sentence encoder beside the TF-IDF features
(issue #12 item 3). It needs no PyTorch and nothing from a hub; without the `semantic` extra
the matcher is lexical and everything else works the same."""
from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.rendering import Renderer
from faq_cache.entries import parse_yaml
from faq_cache.matcher import Matcher
from faq_cache.store import FaqStore
from faq_cache.tier import FaqTier
from faq_helpers import SHOP_FAQ_YAML

REPO = Path(__file__).resolve().parent.parent
encoder_module = pytest.importorskip("onnxruntime", reason="the semantic extra is not installed")


@pytest.fixture(scope="module")
def encoder():
    from faq_cache.encoder import load_encoder

    enc = load_encoder()
    assert enc is not None
    return enc


@pytest.fixture(scope="module")
def shop(encoder):
    return Matcher.fit(parse_yaml(SHOP_FAQ_YAML), encoder=encoder)


def test_the_encoder_gives_close_vectors_to_paraphrases_and_far_ones_to_other_topics(encoder):
    a, b, c = (encoder.encode_one(t) for t in ("my parcel has not arrived yet", "where is my package",
                                                "how do i reset my password"))
    assert abs(float(a @ a) - 1.0) < 1e-3  # unit length
    assert float(a @ b) > float(a @ c) + 0.2
    assert (encoder.encode(["where is my package"])[0] == b).all()  # fit and lookup agree exactly


@pytest.mark.parametrize("question, variant", [("the login page rejects me", "I forgot my password"),
                                               ("I can't sign in", "I forgot my password")])
def test_a_paraphrase_with_no_shared_words_finds_its_entry_where_lexical_features_cannot(shop, question, variant):
    lexical = Matcher.fit(parse_yaml(SHOP_FAQ_YAML), encoder=None)
    right = shop.match(variant).entry_id
    assert shop.match(question, threshold=-1e9).entry_id == right
    assert lexical.match(question, threshold=-1e9).entry_id != right  # off-topic to TF-IDF


def test_retrieve_ranks_the_entry_a_paraphrase_means_first(shop):
    ranked = shop.retrieve("my parcel still has not come, how many days does it take", k=3)
    assert len(ranked) == 3 and ranked[0][0] == shop.match("How long does shipping take?").entry_id
    assert ranked[0][1] >= ranked[1][1] >= ranked[2][1]
    assert shop.retrieve("", k=3) == [] and shop.retrieve("anything", k=0) == []


def test_a_semantic_model_is_stored_and_reloaded_without_a_refit(tmp_path, monkeypatch):
    store = FaqStore(tmp_path / "faq")
    store.import_entries(parse_yaml(SHOP_FAQ_YAML))
    assert store.matcher().kind == "semantic"
    store.close()

    def no_refit(*args, **kwargs):
        raise AssertionError("the stored semantic model should have been reused")

    monkeypatch.setattr(Matcher, "fit", no_refit)
    with FaqStore(tmp_path / "faq") as again:
        m = again.matcher()
        assert m.kind == "semantic" and m.match("When are you open?").accepted


async def test_retrieval_for_the_llm_ranks_a_paraphrase_s_entry_first(tmp_path):
    """The LLM's reference material comes from the same (semantic) scores as the cache."""
    from faq_cache.retrieval import KnowledgeRetriever

    store = FaqStore(tmp_path / "faq")
    store.import_entries(parse_yaml(SHOP_FAQ_YAML))
    tier = FaqTier(store, Renderer())
    assert await tier.ready(60)
    top = KnowledgeRetriever(store).retrieve("I would like to send back the shoes I bought", 2)
    assert top and top[0].text.startswith("Items can be returned")
    store.close()


def test_tierbot_check_says_which_matcher_is_active(tmp_path, monkeypatch, capsys):
    from faq_cache.settings import FaqSettings, describe_matcher
    from bot.config import Config

    assert describe_matcher(FaqSettings.from_config(Config.from_env())).startswith("semantic (minilm")
    monkeypatch.setenv("TIERBOT_FAQ_MATCHER", "lexical")
    assert describe_matcher(FaqSettings.from_config(Config.from_env())) == "lexical (TIERBOT_FAQ_MATCHER=lexical)"
    from bot.config import ConfigError

    monkeypatch.setenv("TIERBOT_FAQ_MATCHER", "neural")
    with pytest.raises(ConfigError, match="TIERBOT_FAQ_MATCHER"):
        FaqSettings.from_config(Config.from_env())


async def test_check_prints_the_matcher_line(tmp_path, monkeypatch, capsys):
    from bot.llm.check import run_check

    monkeypatch.setenv("TIERBOT_CHAIN", "groq")
    await run_check(argparse.Namespace(timeout=0.2))
    assert "faq matcher: semantic (minilm-l6-v2-int8" in capsys.readouterr().out


WITHOUT_EXTRA = textwrap.dedent("""
    import sys
    sys.modules["onnxruntime"] = None  # as if `pip install tierbot` without [semantic]
    from faq_cache.encoder import encoder_status
    from faq_cache.entries import parse_yaml
    from faq_cache.store import FaqStore
    store = FaqStore(sys.argv[1])
    m = store.matcher()
    print(m.kind, m.match("When are you open?").accepted)
    print(encoder_status())
    print("torch" in sys.modules)
    store.close()
""")

WITH_EXTRA = WITHOUT_EXTRA.replace('sys.modules["onnxruntime"] = None', "pass")


def test_without_the_extra_the_matcher_is_lexical_and_a_stored_semantic_model_is_refitted(tmp_path):
    directory = tmp_path / "faq"
    with FaqStore(directory) as store:
        store.import_entries(parse_yaml(SHOP_FAQ_YAML))
        assert store.matcher().kind == "semantic"
    run = subprocess.run([sys.executable, "-c", WITHOUT_EXTRA, str(directory)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    kind_line, status, torch = run.stdout.splitlines()
    assert kind_line == "lexical True"
    assert status.startswith("lexical (semantic extra not installed: onnxruntime; pip install 'tierbot[semantic]')")
    assert torch == "False"
    # and back: a process with the extra replaces the lexical model with a semantic one, still without torch
    run = subprocess.run([sys.executable, "-c", WITH_EXTRA, str(directory)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["semantic True", "semantic (minilm-l6-v2-int8-1, onnxruntime)", "False"]
