"""Splitting answers at Telegram's 4096 limit on sensible boundaries."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from adapters.textsplit import split_text, utf16_len


def test_short_text_is_one_part_and_blank_is_none():
    assert split_text("hello") == ["hello"]
    assert split_text("   \n ") == []


def test_prefers_paragraph_then_line_then_sentence_then_word():
    para = "a" * 60 + "\n\n" + "b" * 60
    assert split_text(para, 100) == ["a" * 60, "b" * 60]
    lines = "a" * 60 + "\n" + "b" * 60
    assert split_text(lines, 100) == ["a" * 60, "b" * 60]
    sentences = "First sentence is here. " * 3 + "Second one."
    parts = split_text(sentences, 50)
    assert all(p.endswith(".") for p in parts)
    words = "word " * 30
    assert all(not p.endswith("wor") and len(p) <= 40 for p in split_text(words, 40))


def test_unbroken_run_is_cut_hard_without_splitting_surrogate_pairs():
    text = "😀" * 100  # each emoji is 2 UTF-16 units
    parts = split_text(text, 51)
    assert all(utf16_len(p) <= 51 for p in parts)
    assert "".join(parts) == text


def test_emoji_count_double_toward_the_limit():
    text = ("😀" * 2100)  # 2100 characters but 4200 UTF-16 units: too long for one message
    parts = split_text(text, 4096)
    assert len(parts) == 2 and all(utf16_len(p) <= 4096 for p in parts)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .!?\n😀é")), max_size=600), st.integers(2, 120))
def test_parts_fit_and_lose_only_whitespace(text, limit):
    parts = split_text(text, limit)
    assert all(p and utf16_len(p) <= limit for p in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")
