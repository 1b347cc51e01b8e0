"""Operators' FAQ files: both formats round-trip, bad files are named by file:line and change nothing."""
from __future__ import annotations

import pytest

from faq_cache.entries import FaqImportError, dump_csv, dump_yaml, load_faq_file, parse_csv
from faq_cache.store import FaqStore
from faq_helpers import SHOP_FAQ_CSV, SHOP_FAQ_YAML


@pytest.fixture
def store(tmp_path):
    s = FaqStore(tmp_path / "faq")
    yield s
    s.close()


def test_csv_rows_with_the_same_answer_form_one_entry(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text(SHOP_FAQ_CSV, encoding="utf-8")
    entries = load_faq_file(path)
    assert len(entries) == 3
    hours = next(e for e in entries if "opening hours" in e.questions[0])
    assert hours.questions == ["What are your opening hours?", "When are you open?"]
    assert hours.answer == "We are open Monday to Friday, 9:00-18:00."
    shipping = next(e for e in entries if "shipping" in e.questions[0])
    assert shipping.tags == ["shipping", "delivery"]  # tags of every row of the entry, ';'-separated
    paying = next(e for e in entries if e.questions[0].startswith("Can I pay"))
    assert paying.questions == ["Can I pay by card, or only PayPal?"]  # quoted comma kept


@pytest.mark.parametrize("fmt", ["csv", "yaml"])
def test_import_export_round_trip(tmp_path, store, fmt):
    src = tmp_path / f"in.{fmt}"
    src.write_text(SHOP_FAQ_CSV if fmt == "csv" else SHOP_FAQ_YAML, encoding="utf-8")
    original = load_faq_file(src)
    store.import_entries(original)
    out = tmp_path / f"out.{fmt}"
    out.write_text(dump_csv(store.entries()) if fmt == "csv" else dump_yaml(store.entries()), encoding="utf-8")
    again = load_faq_file(out)
    key = lambda e: e.id  # noqa: E731
    assert [e.to_dict() for e in sorted(again, key=key)] == [e.to_dict() for e in sorted(original, key=key)]
    # Re-importing the same file updates the entries instead of duplicating them.
    added, updated = store.import_entries(load_faq_file(src))
    assert (added, updated) == (0, len(original))
    assert len(store.entries()) == len(original)


@pytest.mark.parametrize("name, text, line, message", [
    ("missing_column.csv", "question,reply\nhi,hello\n", 1, "'question' and 'answer'"),
    ("empty_answer.csv", "question,answer\nWhen are you open?,9-18\nWhere are you?,\n", 3, "empty answer"),
    ("extra_column.csv", "question,answer\nWhen are you open?,9-18,oops\n", 2, "too many columns"),
    ("empty.csv", "question,answer\n", 1, "no FAQ entries"),
    ("bad_syntax.yaml", "- questions: [a, b\n  answer: x\n", 2, "not valid YAML"),
    ("no_answer.yaml", "- questions: [a]\n  answer: ok\n- questions: [b]\n  tags: [x]\n", 3, "'answer'"),
    ("not_a_list.yaml", "questions: [a]\nanswer: b\n", 1, "expected a list"),
    ("bad_questions.yaml", "- questions: []\n  answer: b\n", 1, "'questions'"),
    ("typo_field.yaml", "- question: [a]\n  answr: b\n", 1, "unknown field"),
])
def test_bad_files_name_file_and_line_and_import_nothing(tmp_path, store, name, text, line, message):
    store.import_entries(load_faq_file(_write(tmp_path / "good.yaml", SHOP_FAQ_YAML)))
    before, version = [e.to_dict() for e in store.entries()], store.version()
    path = _write(tmp_path / name, text)
    with pytest.raises(FaqImportError) as err:
        store.import_entries(load_faq_file(path))
    assert f"{path}:{line}:" in str(err.value)
    assert message in str(err.value)
    assert [e.to_dict() for e in store.entries()] == before
    assert store.version() == version


def test_unknown_extension_and_missing_file_are_clear(tmp_path):
    with pytest.raises(FaqImportError, match="unknown format"):
        load_faq_file(_write(tmp_path / "faq.txt", "q,a"))
    with pytest.raises(FaqImportError, match="cannot read"):
        load_faq_file(tmp_path / "nope.csv")


def test_same_id_with_two_answers_is_rejected():
    with pytest.raises(FaqImportError, match=r"<csv>:3: id 'x' is used with two different answers"):
        parse_csv("question,answer,id\na,one,x\nb,two,x\n")


def test_replace_drops_entries_not_in_the_file(tmp_path, store):
    store.import_entries(load_faq_file(_write(tmp_path / "a.yaml", SHOP_FAQ_YAML)))
    store.import_entries(load_faq_file(_write(tmp_path / "b.csv", SHOP_FAQ_CSV)), replace=True)
    assert {e.answer for e in store.entries()} == {e.answer for e in load_faq_file(tmp_path / "b.csv")}


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path
