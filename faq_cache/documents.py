"""Help-centre pages (Markdown, plain text, HTML) split into passages for retrieval.

A passage is what one heading covers, cut at paragraph boundaries so none is longer
than about MAX_CHARS (≈ 300 tokens): small enough that a few fit in a prompt, large
enough to carry an answer with its context. Its title is the page's title and the
heading path ("Returns › Refund times"), which is what the LLM and the operator see.

A file is read and split whole before anything is stored, so a file that cannot be
read (missing, not UTF-8, no text) raises `KnowledgeImportError` naming it and changes
nothing. The text is kept as data: nothing here interprets it.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["KbPassage", "Document", "KnowledgeImportError", "load_document", "split_markdown", "split_text",
           "html_to_markdown", "SUFFIXES", "MAX_CHARS"]

MAX_CHARS = 1200
SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
            ".html": "html", ".htm": "html"}


class KnowledgeImportError(ValueError):
    """A document that cannot be imported; the message names the file."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)


@dataclass(frozen=True, slots=True)
class KbPassage:
    id: str      # stable for the same document, title and text (re-imports keep it)
    title: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "text": self.text}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> "KbPassage":
        return cls(d["id"], d["title"], d["text"])


@dataclass(frozen=True, slots=True)
class Document:
    """One imported file: its key (resolved path), title, content hash and passages."""

    key: str
    title: str
    sha256: str
    passages: tuple[KbPassage, ...]

    @property
    def id(self) -> str:
        return document_id(self.key)


def document_id(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _paragraphs(lines: list[str]) -> list[str]:
    paras, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paras.append("\n".join(current))
            current = []
    if current:
        paras.append("\n".join(current))
    return paras


def _chunks(paragraphs: list[str], max_chars: int) -> list[str]:
    """Paragraphs joined up to `max_chars`; a longer paragraph is cut between sentences."""
    pieces: list[str] = []
    for p in paragraphs:
        if len(p) <= max_chars:
            pieces.append(p)
            continue
        sentence_run = ""
        for sentence in _SENTENCE.split(p):
            while len(sentence) > max_chars:  # one giant "sentence": cut it between words
                cut = sentence[:max_chars].rsplit(" ", 1)[0] or sentence[:max_chars]
                if sentence_run:
                    pieces.append(sentence_run)
                    sentence_run = ""
                pieces.append(cut)
                sentence = sentence[len(cut):].lstrip()
            if sentence_run and len(sentence_run) + 1 + len(sentence) > max_chars:
                pieces.append(sentence_run)
                sentence_run = ""
            sentence_run = f"{sentence_run} {sentence}".strip()
        if sentence_run:
            pieces.append(sentence_run)
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + 2 + len(piece) <= max_chars:
            out[-1] = f"{out[-1]}\n\n{piece}"
        else:
            out.append(piece)
    return out


def _sections(lines: list[str]) -> list[tuple[list[str], list[str]]]:
    """(heading path, body lines) for each Markdown section, in order."""
    path: list[tuple[int, str]] = []
    sections: list[tuple[list[str], list[str]]] = [([], [])]
    in_code = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
        heading = None if in_code else _HEADING.match(line)
        level, title = (len(heading.group(1)), heading.group(2)) if heading else (0, "")
        if (not in_code and not heading and line.strip() and i + 1 < len(lines) and _SETEXT.match(lines[i + 1])
                and (not sections[-1][1] or not sections[-1][1][-1].strip())):
            level, title = (1 if lines[i + 1].startswith("=") else 2), line.strip()
            i += 1
        if level:
            path = [(lv, t) for lv, t in path if lv < level] + [(level, title.strip())]
            sections.append(([t for _, t in path if t], []))
        else:
            sections[-1][1].append(line)
        i += 1
    return sections


def split_markdown(text: str, doc_title: str, key: str, max_chars: int = MAX_CHARS) -> tuple[str, list[KbPassage]]:
    """(the page's title, its passages). The title is the first level-1 heading, else `doc_title`."""
    lines = text.splitlines()
    sections = _sections(lines)
    h1 = next((path[0] for path, _ in sections if path), None)
    title = h1 if h1 and any(_HEADING.match(x) and x.startswith("# ") for x in lines) else doc_title
    passages: list[KbPassage] = []
    for path, body in sections:
        trail = [t for t in path if t != title]
        section_title = " › ".join([title, *trail])
        for chunk in _chunks(_paragraphs(body), max_chars):
            passages.append(_passage(key, section_title, chunk))
    return title, passages


def split_text(text: str, doc_title: str, key: str, max_chars: int = MAX_CHARS) -> tuple[str, list[KbPassage]]:
    """Plain text: passages of whole paragraphs, titled by the file."""
    return doc_title, [_passage(key, doc_title, chunk) for chunk in _chunks(_paragraphs(text.splitlines()), max_chars)]


def _passage(key: str, title: str, text: str) -> KbPassage:
    digest = hashlib.sha1(f"{key}\n{title}\n{text}".encode("utf-8")).hexdigest()[:12]
    return KbPassage(digest, title, text.strip())


class _HtmlToMarkdown(HTMLParser):
    """Headings become Markdown headings, block elements paragraph breaks; scripts,
    styles and page chrome (nav, header, footer, aside, forms) are dropped."""

    SKIP = {"script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg",
            "button", "select"}
    BLOCK = {"p", "div", "section", "article", "main", "li", "ul", "ol", "table", "tr", "br", "blockquote",
             "pre", "dd", "dt", "dl", "hr", "details", "summary", "figure", "figcaption"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.heading: int | None = None
        self.title: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skip += 1
        elif tag == "title":
            self.in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self.heading = int(tag[1])
            self.out.append("\n\n" + "#" * self.heading + " ")
        elif tag in self.BLOCK:
            self.out.append("\n\n" if tag != "li" else "\n\n- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "title":
            self.in_title = False
        elif re.fullmatch(r"h[1-6]", tag):
            self.heading = None
            self.out.append("\n\n")
        elif tag in self.BLOCK:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
            return
        if self.skip:
            return
        text = " ".join(data.split())
        if not text:
            if data and self.out and not self.out[-1].endswith((" ", "\n")):
                self.out.append(" ")
            return
        if data[:1].isspace() and self.out and not self.out[-1].endswith((" ", "\n")):
            text = " " + text
        if data[-1:].isspace():
            text += " "
        self.out.append(text)


def html_to_markdown(html: str) -> tuple[str | None, str]:
    """(the page's <title> or None, its text as Markdown-like headings and paragraphs)."""
    parser = _HtmlToMarkdown()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.out).splitlines()]
    title = " ".join("".join(parser.title).split()) or None
    return title, "\n".join(lines)


def load_document(path: str | Path, max_chars: int = MAX_CHARS) -> Document:
    """Read and split one file; raise KnowledgeImportError naming it if it cannot be used."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise KnowledgeImportError(path, f"unknown format {path.suffix or '(no extension)'!r}: "
                                         f"use {', '.join(sorted(SUFFIXES))}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise KnowledgeImportError(path, f"cannot read: {e.strerror or e}") from None
    if b"\x00" in raw[:4096]:
        raise KnowledgeImportError(path, "binary file, not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise KnowledgeImportError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    key = str(path.resolve())
    stem = path.stem.replace("-", " ").replace("_", " ").strip() or path.name
    if kind == "html":
        page_title, text = html_to_markdown(text)
        title, passages = split_markdown(text, page_title or stem, key, max_chars)
        if page_title and title == stem:
            title = page_title
    elif kind == "markdown":
        title, passages = split_markdown(text, stem, key, max_chars)
    else:
        title, passages = split_text(text, stem, key, max_chars)
    passages = [p for p in passages if p.text]
    if not passages:
        raise KnowledgeImportError(path, "no text found")
    return Document(key=key, title=title, sha256=hashlib.sha256(raw).hexdigest(),
                    passages=tuple(dict((p.id, p) for p in passages).values()))
