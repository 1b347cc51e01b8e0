"""FAQ entries and the operator's import files (CSV and YAML).

A file is parsed and validated whole before anything is stored, so a bad file is
reported with its name and line and changes nothing.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["FaqEntry", "FaqImportError", "load_faq_file", "parse_csv", "parse_yaml", "entry_id_for",
           "dump_csv", "dump_yaml"]


class FaqImportError(ValueError):
    """A malformed FAQ file; the message names the file and the line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = str(path), line


def entry_id_for(answer: str) -> str:
    """Stable id from the answer, so re-importing the same file updates rather than duplicates."""
    return hashlib.sha1(answer.strip().encode("utf-8")).hexdigest()[:10]


@dataclass
class FaqEntry:
    """One answer and the ways customers ask for it."""

    id: str
    answer: str
    questions: list[str]
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "answer": self.answer, "questions": list(self.questions), "tags": list(self.tags)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FaqEntry":
        return cls(id=d["id"], answer=d["answer"], questions=list(d["questions"]), tags=list(d.get("tags", [])))


def _clean(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def parse_csv(text: str, path: str | Path = "<csv>") -> list[FaqEntry]:
    """Columns `question,answer` (optional `tags`, `id`); rows with the same answer form one entry."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "question" not in fields or "answer" not in fields:
        raise FaqImportError(path, 1, f"the header must have columns 'question' and 'answer', got {fields}")
    reader.fieldnames = fields
    entries: dict[str, FaqEntry] = {}
    line = 1
    for row in reader:
        line = reader.line_num
        if None in row:
            raise FaqImportError(path, line, "too many columns (quote fields that contain commas)")
        question, answer = _clean(row.get("question")), (row.get("answer") or "").strip()
        if not question and not answer:
            continue
        if not question:
            raise FaqImportError(path, line, "empty question")
        if not answer:
            raise FaqImportError(path, line, "empty answer")
        eid = _clean(row.get("id")) or entry_id_for(answer)
        entry = entries.setdefault(eid, FaqEntry(eid, answer, []))
        if entry.answer != answer:
            raise FaqImportError(path, line, f"id {eid!r} is used with two different answers")
        if question not in entry.questions:
            entry.questions.append(question)
        for tag in (_clean(t) for t in (row.get("tags") or "").split(";")):
            if tag and tag not in entry.tags:
                entry.tags.append(tag)
    if not entries:
        raise FaqImportError(path, line, "no FAQ entries found")
    return list(entries.values())


class _LineLoader(yaml.SafeLoader):
    """Records the line each mapping starts on, for error messages."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, path: str | Path = "<yaml>") -> list[FaqEntry]:
    """A list of `{questions: [...], answer: ..., tags: [...], id: ...}` mappings."""
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise FaqImportError(path, line, f"not valid YAML: {e.problem}") from None
    except yaml.YAMLError as e:
        raise FaqImportError(path, None, f"not valid YAML: {e}") from None
    if isinstance(data, dict) and "faq" in data:
        data = data["faq"]
    if not isinstance(data, list) or not data:
        raise FaqImportError(path, 1, "expected a list of entries like '- questions: [...]\\n  answer: ...'")
    entries: dict[str, FaqEntry] = {}
    for item in data:
        line = item.get("__line__") if isinstance(item, dict) else None
        if not isinstance(item, dict):
            raise FaqImportError(path, line, f"each entry must be a mapping, got {type(item).__name__}")
        unknown = set(item) - {"questions", "question", "answer", "tags", "id", "__line__"}
        if unknown:
            raise FaqImportError(path, line, f"unknown field(s) {sorted(unknown)}")
        questions = item.get("questions", item.get("question"))
        if isinstance(questions, str):
            questions = [questions]
        if not isinstance(questions, list) or not questions or not all(isinstance(q, (str, int, float)) for q in questions):
            raise FaqImportError(path, line, "'questions' must be a non-empty list of strings")
        questions = [_clean(q) for q in questions if _clean(q)]
        answer = item.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise FaqImportError(path, line, "'answer' must be a non-empty string")
        tags = item.get("tags") or []
        if isinstance(tags, str):
            tags = [tags]
        if not isinstance(tags, list):
            raise FaqImportError(path, line, "'tags' must be a list")
        eid = _clean(item.get("id")) or entry_id_for(answer)
        if eid in entries:
            raise FaqImportError(path, line, f"duplicate entry id {eid!r} (the same answer twice?)")
        entries[eid] = FaqEntry(eid, answer.strip(), list(dict.fromkeys(questions)), [_clean(t) for t in tags])
    return list(entries.values())


def load_faq_file(path: str | Path) -> list[FaqEntry]:
    """Parse a `.csv`, `.yaml` or `.yml` FAQ file; raise FaqImportError naming file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise FaqImportError(path, None, f"not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise FaqImportError(path, None, f"cannot read: {e.strerror}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return parse_csv(text, path)
    if suffix in (".yaml", ".yml"):
        return parse_yaml(text, path)
    raise FaqImportError(path, None, "unknown format: use .csv (question,answer) or .yaml")


def dump_csv(entries: list[FaqEntry]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["question", "answer", "tags", "id"])
    for e in entries:
        for q in e.questions:
            w.writerow([q, e.answer, ";".join(e.tags), e.id])
    return out.getvalue()


def dump_yaml(entries: list[FaqEntry]) -> str:
    return yaml.safe_dump([e.to_dict() for e in entries], allow_unicode=True, sort_keys=False)
