"""`tierbot kb`: help-centre pages split into passages, imported all or nothing, replaced
atomically on re-import, listed, removed and tested — through the command line."""
from __future__ import annotations

import json
import os

import pytest

from bot.cli import main
from faq_cache.documents import KnowledgeImportError, html_to_markdown, load_document
from faq_cache.store import FaqStore

RETURNS_MD = """\
# Returns

You can return any item within 30 days of delivery.

## How to return an item

Open 'My orders', pick the order and press "Return". Print the label and drop the parcel
at any post office.

## Refund times

Refunds reach your account 5-10 business days after we receive the parcel.
"""

SHIPPING_HTML = """<!doctype html><html><head><title>Shipping | Help centre</title>
<style>body { color: red }</style><script>var tracking = "secret";</script></head>
<body><nav><a href="/">Home</a> &gt; Help</nav>
<h1>Shipping</h1><p>We deliver to every country in the <b>European Union</b>.</p>
<h2>Delivery times</h2><ul><li>Standard: 2-5 business days</li><li>Express: 1-2 business days</li></ul>
<footer>© Example</footer></body></html>"""


def kb(*args: str) -> int:
    return main(["kb", *args])


def store() -> FaqStore:
    return FaqStore(os.path.join(os.environ["TIERBOT_DATA_DIR"], "faq", "store"))


def passages() -> dict[str, str]:
    with store() as s:
        return {p.title: p.text for p in s.knowledge.passages()}


def test_markdown_splits_on_headings_and_titles_carry_the_heading_path(tmp_path):
    path = tmp_path / "returns.md"
    path.write_text(RETURNS_MD, encoding="utf-8")
    doc = load_document(path)
    assert doc.title == "Returns"
    assert [p.title for p in doc.passages] == ["Returns", "Returns › How to return an item", "Returns › Refund times"]
    assert doc.passages[1].text.startswith("Open 'My orders'") and "post office" in doc.passages[1].text


def test_html_keeps_headings_and_text_and_drops_scripts_styles_and_page_chrome(tmp_path):
    path = tmp_path / "shipping.html"
    path.write_text(SHIPPING_HTML, encoding="utf-8")
    doc = load_document(path)
    text = " ".join(p.text for p in doc.passages)
    assert doc.title == "Shipping"
    assert [p.title for p in doc.passages] == ["Shipping", "Shipping › Delivery times"]
    assert "European Union" in text and "Express: 1-2 business days" in text
    assert "secret" not in text and "color" not in text and "Home" not in text and "©" not in text
    assert html_to_markdown("<title>T</title><p>a</p>")[0] == "T"


def test_long_sections_are_cut_between_paragraphs_or_sentences(tmp_path):
    para = " ".join(f"Sentence number {i} about the warranty." for i in range(60))
    path = tmp_path / "warranty.txt"
    path.write_text(f"{para}\n\nA short closing paragraph.\n", encoding="utf-8")
    doc = load_document(path, max_chars=400)
    assert len(doc.passages) > 3 and all(len(p.text) <= 400 for p in doc.passages)
    assert all(p.text.endswith(".") for p in doc.passages)  # no sentence cut in half
    assert doc.passages[0].title == "warranty"
    joined = " ".join(p.text.replace("\n\n", " ") for p in doc.passages)
    assert joined == f"{para} A short closing paragraph."


@pytest.mark.parametrize("name, content, message", [
    ("missing.md", None, "cannot read"),
    ("latin1.md", "Rückgabe".encode("latin-1"), "not UTF-8"),
    ("binary.txt", b"\x00\x01\x02PNG", "binary"),
    ("empty.html", b"<html><script>x</script></html>", "no text found"),
    ("faq.pdf", b"%PDF-1.4", "unknown format"),
])
def test_a_file_that_cannot_be_read_changes_nothing_and_is_named(tmp_path, capsys, name, content, message):
    good = tmp_path / "returns.md"
    good.write_text(RETURNS_MD, encoding="utf-8")
    assert kb("import", str(good)) == 0
    before = passages()
    good.write_text(RETURNS_MD.replace("30 days", "60 days"), encoding="utf-8")  # a change in the same run
    bad = tmp_path / name
    if content is not None:
        bad.write_bytes(content)
    capsys.readouterr()
    assert kb("import", str(good), str(bad)) == 1
    err = capsys.readouterr().err
    assert f"{bad}: " in err and message in err and "nothing was imported" in err
    assert passages() == before  # not even the good file's change went in


def test_reimporting_a_changed_file_replaces_its_passages_and_keeps_the_others(tmp_path, capsys):
    returns, shipping = tmp_path / "returns.md", tmp_path / "shipping.html"
    returns.write_text(RETURNS_MD, encoding="utf-8")
    shipping.write_text(SHIPPING_HTML, encoding="utf-8")
    assert kb("import", str(returns), str(shipping)) == 0
    returns.write_text(RETURNS_MD.replace("## Refund times\n\nRefunds reach your account 5-10",
                                          "## Refunds\n\nRefunds reach your account 3-5"), encoding="utf-8")
    capsys.readouterr()
    assert kb("import", str(returns)) == 0
    assert capsys.readouterr().out.startswith("updated")
    now = passages()
    assert "Returns › Refund times" not in now and "3-5 business days" in now["Returns › Refunds"]
    assert "Shipping › Delivery times" in now  # the other document is untouched
    with store() as s:
        assert len(s.knowledge.documents()) == 2
        # The stored index serves the new passages (no stale passage can come back).
        hits = [p.title for p, _ in s.knowledge.search("how many days until my refund", 3, wait=True)]
    assert "Returns › Refunds" in hits and "Returns › Refund times" not in hits


def test_list_test_and_remove(tmp_path, capsys):
    returns = tmp_path / "returns.md"
    returns.write_text(RETURNS_MD, encoding="utf-8")
    assert kb("list") == 0 and "the knowledge base is empty" in capsys.readouterr().out
    assert kb("import", str(returns)) == 0
    capsys.readouterr()
    assert kb("list", "--json") == 0
    docs = json.loads(capsys.readouterr().out)
    assert [(d["title"], d["passages"]) for d in docs] == [("Returns", 3)]
    assert kb("test", "how do I send an item back with the label?") == 0
    out = capsys.readouterr().out
    first = out.splitlines()[1]
    assert first.startswith("1. kb:") and "'Returns › How to return an item'" in first
    assert kb("test", "how do I send an item back?", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passages"][0]["given"] and result["tokens"] > 0
    assert kb("remove", "nope") == 1 and "no document 'nope'" in capsys.readouterr().err
    assert kb("remove", docs[0]["id"]) == 0
    assert passages() == {}
    assert kb("test", "how do I send an item back?") == 1


def test_knowledge_import_error_names_the_file(tmp_path):
    with pytest.raises(KnowledgeImportError, match=r"nope\.md: cannot read"):
        load_document(tmp_path / "nope.md")


def test_a_directory_imports_every_page_inside_it_and_an_empty_one_is_an_error(tmp_path, capsys):
    export = tmp_path / "help-centre"
    (export / "orders").mkdir(parents=True)
    (export / "returns.md").write_text(RETURNS_MD, encoding="utf-8")
    (export / "orders" / "shipping.html").write_text(SHIPPING_HTML, encoding="utf-8")
    (export / "orders" / "logo.png").write_bytes(b"\x89PNG")  # not a page: left alone
    assert kb("import", str(export)) == 0
    assert {"Returns › Refund times", "Shipping › Delivery times"} <= set(passages())
    empty = tmp_path / "empty"
    empty.mkdir()
    before = passages()
    capsys.readouterr()
    assert kb("import", str(export), str(empty)) == 1
    err = capsys.readouterr().err
    assert f"{empty}: no " in err and "nothing was imported" in err
    assert passages() == before
