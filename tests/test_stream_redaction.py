"""A secret echoed by a provider never reaches the customer, even split across chunks."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot import Event, Reply, StreamReset, SupportBot
from bot.rendering import Renderer
from bot.secrets import StreamRedactor, register_secrets
from bot.templates_tier import TemplateTier

KEY = "gsk_streamtest_9f8e7d6c5b4a39281706"
register_secrets([KEY])


class EchoingStream:
    """A streaming tier that leaks the key in pieces, as a header-echoing proxy might."""

    name = "llm"

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    async def answer(self, event, turn):
        return None

    async def stream(self, event, turn):
        for piece in self.pieces:
            yield piece
        yield Reply(text="".join(self.pieces), tier="llm", provider="p", model="m")


async def test_a_key_split_across_stream_chunks_is_redacted():
    text = f"Sure! Your header was Authorization: Bearer {KEY} — anything else?"
    cut1, cut2 = text.index(KEY) + 5, text.index(KEY) + 20
    pieces = [text[:cut1], text[cut1:cut2], text[cut2:]]
    bot = SupportBot([EchoingStream(pieces), TemplateTier(Renderer())])
    items = [i async for i in bot.stream(Event("t", "c", "u", "what did I send?"))]
    chunks, final = items[:-1], items[-1]
    shown = "".join(chunks)
    assert KEY not in shown and KEY[:12] not in shown
    assert "[REDACTED]" in shown and shown.endswith("anything else?")
    assert KEY not in final.text


@given(text=st.text(max_size=80), cuts=st.lists(st.integers(0, 200), max_size=6))
def test_stream_redactor_equals_redacting_the_whole_text(text, cuts):
    whole = text[: len(text) // 2] + KEY + text[len(text) // 2:]
    points = sorted({min(c, len(whole)) for c in cuts} | {0, len(whole)})
    r = StreamRedactor()
    out = "".join(r.feed(whole[a:b]) for a, b in zip(points, points[1:])) + r.flush()
    assert KEY not in out
    assert out == whole.replace(KEY, "[REDACTED]")


async def test_a_tier_failing_mid_stream_does_not_leak_its_held_tail_into_the_next():
    class FailsAfterAKeyPrefix:
        name = "llm"

        async def answer(self, event, turn):
            return None

        async def stream(self, event, turn):
            yield "Partial answer ending in " + KEY[:6]  # held back: could be the key
            raise RuntimeError("stream broke")

    bot = SupportBot([FailsAfterAKeyPrefix(), EchoingStream(["Second ", "answer."]), TemplateTier(Renderer())])
    items = [i async for i in bot.stream(Event("t", "c", "u", "q"))]
    chunks = items[:-1]
    assert chunks[0] == "Partial answer ending in "
    assert chunks[1] == StreamReset("tier_failed")  # the failed tier's text is withdrawn
    assert "".join(chunks[2:]) == "Second answer." and items[-1].text == "Second answer."
