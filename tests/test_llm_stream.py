"""Streaming: free failover before the first chunk; a cut is completed or replaced,
never left truncated, never shown twice."""
from __future__ import annotations

import time

import pytest

from bot import Event, StreamReset
from fakes import llm_servers as F
from fakes.llm_bot import MODELS, llm_env, make_bot

SLACK = 0.5  # "deadline plus a few ms", with room for a loaded 2-core machine (stalls of 0.3 s seen)


def ev(text: str = "How long does shipping take?") -> Event:
    return Event(platform="test", conversation_id="s1", user_id="u1", text=text)


@pytest.fixture
async def fp():
    async with F.FakeProviders() as f:
        yield f


async def collect(bot, event):
    t0 = time.perf_counter()
    items = [x async for x in bot.stream(event)]
    return items[:-1], items[-1], time.perf_counter() - t0


async def test_healthy_stream_yields_chunks_then_the_reply(fp, tmp_path):
    fp.groq.default = F.ok("Delivery takes two to five days.", input_tokens=50)
    async with make_bot(llm_env(fp, tmp_path)) as bot:
        chunks, reply, _ = await collect(bot, ev())
    assert len(chunks) > 1 and "".join(chunks) == reply.text == "Delivery takes two to five days."
    assert reply.provider == "groq" and (reply.input_tokens, reply.output_tokens) == (50, 6)
    assert "stream" not in reply.meta
    assert fp.groq.requests[0].body["stream"] is True


@pytest.mark.parametrize("fault", [F.server_error, F.rate_limited, F.overloaded, F.empty, F.malformed, F.safety])
async def test_failover_before_first_chunk_is_invisible(fp, tmp_path, fault):
    fp.groq.default = fault()
    fp.gemini.default = F.ok("From Gemini.")
    async with make_bot(llm_env(fp, tmp_path)) as bot:
        chunks, reply, _ = await collect(bot, ev())
    assert "".join(chunks) == "From Gemini." == reply.text
    assert reply.provider == "gemini" and reply.fallback
    assert "stream" not in reply.meta


async def test_black_holed_stream_fails_over_within_its_budget(fp, tmp_path):
    fp.groq.default = F.black_hole()
    async with make_bot(llm_env(fp, tmp_path, deadline=3.0, attempt=1.0)) as bot:
        chunks, reply, elapsed = await collect(bot, ev())
    assert reply.provider == "gemini" and reply.attempts[0].outcome == "timeout"
    assert elapsed < 3.0 + SLACK


async def test_stream_that_stalls_after_first_chunks_is_cut_and_completed(fp, tmp_path):
    # Chunks arrive slowly (0.4 s apart: 3.2 s in all); the attempt's budget (1.4 s) ends
    # mid-answer, with room for two chunks or more even when the loop runs late.
    fp.groq.default = F.ok("one two three four five six seven eight", chunk_delay=0.4)
    fp.gemini.default = F.ok(" (continued) the end.")
    async with make_bot(llm_env(fp, tmp_path, deadline=5.0, attempt=1.4)) as bot:
        chunks, reply, elapsed = await collect(bot, ev())
    assert elapsed < 5.0 + SLACK
    assert reply.text.startswith("one two") and reply.text.endswith("the end.")
    assert "".join(chunks) == reply.text
    assert reply.attempts[0].outcome == "stream_cut"
    assert reply.meta["stream"]["completed_by"] == f"gemini/{MODELS['gemini']}"


async def test_cut_with_nobody_left_is_replaced_by_templates(fp, tmp_path):
    fp.groq.default = F.cut("Refunds usually take", cut_after=2)
    async with make_bot(llm_env(fp, tmp_path, chain="groq")) as bot:
        chunks, reply, _ = await collect(bot, ev("I want a refund"))
    reset = next(i for i, c in enumerate(chunks) if isinstance(c, StreamReset))
    assert "".join(chunks[:reset]) == "Refunds usually"  # what the preview showed...
    assert reply.tier == "template" and "refund" in reply.text.lower()  # ...is replaced,
    assert "".join(chunks[reset + 1:]) == reply.text  # and the consumer is told so
    assert reply.meta["stream"] == {"cut": [f"groq/{MODELS['groq']}"], "replaced_by": "template",
                                    "shown": "Refunds usually"}
    cut = reply.attempts[0]
    assert cut.outcome == "stream_cut" and cut.output_tokens > 0 and cut.cost_usd > 0
    assert "usage_estimated" in cut.detail  # Groq reports usage only at the end


async def test_claude_continues_a_cut_answer_by_prefill(fp, tmp_path):
    fp.groq.default = F.cut("Our support team is available", cut_after=3)
    fp.claude.default = F.ok(" is available Monday to Friday.")  # a continuation keeps its leading space
    async with make_bot(llm_env(fp, tmp_path, chain="groq,claude")) as bot:
        chunks, reply, _ = await collect(bot, ev("when are you open"))
    assert reply.text == "Our support team is available Monday to Friday."
    body = fp.claude.requests[0].body
    assert body["messages"][-1] == {"role": "assistant", "content": "Our support team"}
    assert "".join(chunks) == reply.text


def visible(chunks: list) -> str:
    """What a consumer that appends chunks and honours resets shows at the end."""
    text = ""
    for c in chunks:
        text = "" if isinstance(c, StreamReset) else text + c
    return text


async def test_groq_cut_twice_then_gemini_never_shows_text_twice(fp, tmp_path):
    # The case: models asked to continue start over instead, Groq twice, then Gemini.
    fp.groq.default = F.cut("[groq] The quick brown fox jumps over the lazy dog.", cut_after=4)
    fp.gemini.default = F.ok("[gemini] The quick brown fox jumps over the lazy dog.")
    env = llm_env(fp, tmp_path, chain="groq,gemini", TIERBOT_GROQ_MODELS="llama-a,llama-b")
    async with make_bot(env) as bot:
        chunks, reply, _ = await collect(bot, ev())
    assert [a.outcome for a in reply.attempts] == ["stream_cut", "stream_cut", "ok"]
    assert visible(chunks) == reply.text == "[gemini] The quick brown fox jumps over the lazy dog."
    # Groq's second go repeated the words shown: dropped, nothing new shown; Gemini's other
    # words: one reset, then its text.
    assert [c for c in chunks if isinstance(c, StreamReset)] == [StreamReset("restarted")]
    assert "".join(chunks[:chunks.index(StreamReset("restarted"))]) == "[groq] The quick brown"


async def test_a_continuation_that_starts_over_with_the_same_words_is_seamless(fp, tmp_path):
    fp.groq.default = F.cut("Delivery takes two to five days.", cut_after=3)
    fp.gemini.default = F.ok("Delivery takes two to five days.")
    async with make_bot(llm_env(fp, tmp_path, chain="groq,gemini")) as bot:
        chunks, reply, _ = await collect(bot, ev())
    assert not any(isinstance(c, StreamReset) for c in chunks)
    assert "".join(chunks) == reply.text == "Delivery takes two to five days."
    assert reply.meta["stream"]["completed_by"].startswith("gemini/")


def splice_after_cut(shown: str, *chunks: str, finished: bool = True) -> tuple[list, str]:
    from bot.llm.streaming import Splice

    s = Splice()
    s.begin()
    out = list(s.feed(shown))
    s.begin()  # the next attempt takes over
    for c in chunks:
        out += s.feed(c)
    if finished:
        out += s.finish()
    return out, s.text


@pytest.mark.parametrize("shown, chunks, seen, final", [
    # a real continuation is appended as it is
    ("The quick brown", (" fox", " jumps", " over", " the", " lazy", " dog."),
     ["The quick brown", " fox jumps over the lazy dog."], "The quick brown fox jumps over the lazy dog."),
    # started over with the same words: only the new part is shown
    ("The quick brown", ("The", " quick", " brown", " fox."), ["The quick brown", " fox."],
     "The quick brown fox."),
    # started over in other words: withdrawn, then shown from the start
    ("Sure! The quick brown", ("Of course.", " The quick brown", " fox."),
     ["Sure! The quick brown", StreamReset("restarted"), "Of course. The quick brown fox."],
     "Of course. The quick brown fox."),
    # the new answer is a shorter start of what was shown: it replaces it
    ("The quick brown fox", ("The quick",), ["The quick brown fox", StreamReset("restarted"), "The quick"],
     "The quick"),
    # a continuation that repeats shown words later on is still a continuation
    ("Our support team is available", (" Monday to Friday, and our support team answers fast.",),
     ["Our support team is available", " Monday to Friday, and our support team answers fast."],
     "Our support team is available Monday to Friday, and our support team answers fast."),
])
def test_splice_joins_a_taking_over_attempt_without_repeating(shown, chunks, seen, final):
    out, text = splice_after_cut(shown, *chunks)
    assert out == seen and text == final


def test_splice_holds_back_a_possible_restart_until_it_is_clear():
    out, _ = splice_after_cut("The quick brown fox", "The quick", finished=False)
    assert out == ["The quick brown fox"]  # nothing more shown yet
