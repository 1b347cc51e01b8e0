"""Knowledge passages (imported help-centre pages) beside the FAQ entries, and their index.

`KnowledgeStore` is the one small interface the rest of tierbot uses for passages:
documents in, passages out, all-or-nothing. This implementation keeps them in the FAQ
store's diskcache (one value for all documents, written with its version in one
transaction, like the FAQ entries), so worker processes share them and an import is
atomic: re-importing a changed file swaps its passages in one step, and a failed import
changes nothing.

`PassageIndex` ranks passages for a question by cosine similarity of TF-IDF vectors over
the matcher's own features (character 2-5-grams within words, word uni/bi-grams): the
FAQ matcher's SVM needs several questions per class, a passage has one text. It is
fitted when the passages change (by `tierbot kb import`, stored for other processes),
and a reply never waits for a fit: until the new index is ready the previous one serves
(a passage it names that is gone is skipped).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterable, Sequence

import diskcache
import numpy as np

from bot.logs import kv

from .documents import Document, KbPassage, document_id
from .matcher import char_ngrams, word_ngrams
from .normalize import normalize

__all__ = ["KnowledgeStore", "PassageIndex", "INDEX_VERSION"]

log = logging.getLogger("tierbot.faq.kb")

_DOCS, _VERSION, _INDEX = "kb:documents", "kb:version", "kb:index"
INDEX_VERSION = 1  # bump when the index's features change: stored indexes are refitted


class PassageIndex:
    """TF-IDF cosine over passages (title + text). Pickles as plain arrays."""

    def __init__(self, ids: list[str], vectorizers: list, matrix) -> None:
        self.ids, self.vectorizers, self.matrix = ids, vectorizers, matrix

    @classmethod
    def fit(cls, passages: Sequence[KbPassage]) -> "PassageIndex":
        from scipy.sparse import hstack
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize as l2

        if not passages:
            return cls([], [], None)
        texts = [normalize(f"{p.title}\n{p.text}") for p in passages]
        vectorizers = [TfidfVectorizer(analyzer=char_ngrams, sublinear_tf=True, dtype=np.float32),
                       TfidfVectorizer(analyzer=word_ngrams, sublinear_tf=True, dtype=np.float32)]
        # Each block normalised, then the whole: char and word evidence weigh the same.
        blocks = [l2(v.fit_transform(texts)) for v in vectorizers]
        matrix = l2(hstack(blocks).tocsr())
        return cls([p.id for p in passages], vectorizers, matrix)

    def retrieve(self, text: str, k: int) -> list[tuple[str, float]]:
        """The `k` passages most similar to `text` as (passage id, cosine), best first."""
        from scipy.sparse import hstack
        from sklearn.preprocessing import normalize as l2

        q = normalize(text)
        if not q or not self.ids or k <= 0:
            return []
        vec = l2(hstack([l2(v.transform([q])) for v in self.vectorizers]).tocsr())
        scores = (self.matrix @ vec.T).toarray().ravel()
        top = np.argsort(scores)[::-1][:k]
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]


class KnowledgeStore:
    """Documents and their passages, shared by every process using the same diskcache."""

    def __init__(self, cache: diskcache.Cache) -> None:
        self.cache = cache
        self._snap: tuple[int, dict[str, dict], dict[str, KbPassage]] | None = None
        self._index: PassageIndex | None = None
        self._index_version = -1
        self._fit_lock = threading.Lock()
        self._fitting: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # -- documents ----------------------------------------------------------------------
    def version(self) -> int:
        return int(self.cache.get(_VERSION, 0))

    def _snapshot(self) -> tuple[int, dict[str, dict], dict[str, KbPassage]]:
        """(version, documents, passage id -> passage): read from disk only when the version
        changed; replaced as one tuple, so a reader on another thread sees one or the other."""
        version = self.version()
        snap = self._snap
        if snap is None or snap[0] != version:
            with self.cache.transact(retry=True):
                docs = dict(self.cache.get(_DOCS, {}))
                version = self.version()
            by_id = {p["id"]: KbPassage.from_dict(p) for d in docs.values() for p in d["passages"]}
            snap = self._snap = (version, docs, by_id)
        return snap

    def _documents(self) -> dict[str, dict]:
        return self._snapshot()[1]

    def documents(self) -> list[dict]:
        """Each document: key (path), id, title, sha256, imported_at, passages (count)."""
        return [{"key": key, "id": document_id(key), "title": d["title"], "sha256": d["sha256"],
                 "imported_at": d["imported_at"], "passages": len(d["passages"])}
                for key, d in sorted(self._documents().items())]

    def passages(self, document: str | None = None) -> list[KbPassage]:
        docs = self._documents()
        keys = [document] if document is not None else list(docs)
        return [KbPassage.from_dict(p) for key in keys if key in docs for p in docs[key]["passages"]]

    def passage(self, passage_id: str) -> KbPassage | None:
        return self._snapshot()[2].get(passage_id)

    def find_document(self, ref: str) -> str | None:
        """The key of a document given its key, its id or a path that resolves to it."""
        from pathlib import Path

        docs = self._documents()
        if ref in docs:
            return ref
        for key in docs:
            if document_id(key) == ref:
                return key
        resolved = str(Path(ref).resolve())
        return resolved if resolved in docs else None

    def replace(self, documents: Iterable[Document]) -> dict[str, str]:
        """Put these documents in, each replacing every passage it had, in one transaction.

        Returns key -> "added", "updated" or "unchanged"."""
        new = list(documents)
        outcome: dict[str, str] = {}
        with self.cache.transact(retry=True):
            docs = dict(self.cache.get(_DOCS, {}))
            for doc in new:
                old = docs.get(doc.key)
                outcome[doc.key] = "added" if old is None else (
                    "unchanged" if old["sha256"] == doc.sha256 else "updated")
                docs[doc.key] = {"title": doc.title, "sha256": doc.sha256, "imported_at": time.time(),
                                 "passages": [p.to_dict() for p in doc.passages]}
            if any(v != "unchanged" for v in outcome.values()):
                self.cache.set(_DOCS, docs, retry=True)
                version = self.cache.incr(_VERSION, retry=True)
                log.info(kv(event="kb_import", documents=len(new), version=version,
                            passages=sum(len(d.passages) for d in new)))
        return outcome

    def remove(self, key: str) -> bool:
        with self.cache.transact(retry=True):
            docs = dict(self.cache.get(_DOCS, {}))
            if key not in docs:
                return False
            del docs[key]
            self.cache.set(_DOCS, docs, retry=True)
            self.cache.incr(_VERSION, retry=True)
        return True

    # -- index ----------------------------------------------------------------------------
    def index(self) -> PassageIndex:
        """The index for the current passages: in memory, else stored, else fitted (blocks)."""
        version = self.version()
        if self._index is not None and self._index_version == version:
            return self._index
        with self._fit_lock:
            if self._index is not None and self._index_version == version:
                return self._index
            stored = self.cache.get(_INDEX)
            if stored and stored[0] == version and stored[1] == INDEX_VERSION:
                index = stored[2]
            else:
                index = PassageIndex.fit(self.passages())
                with self.cache.transact(retry=True):
                    if self.version() == version:
                        self.cache.set(_INDEX, (version, INDEX_VERSION, index), retry=True)
                log.info(kv(event="kb_index_fitted", passages=len(index.ids), version=version))
            self._index, self._index_version = index, version
            return index

    def index_now(self) -> PassageIndex | None:
        """The index to use right now, never waiting for a fit: the current one; else the
        stored one if another process (`tierbot kb import`) fitted it (a load: milliseconds,
        once); else the previous one while the current one is fitted in a thread (None
        before any)."""
        version = self.version()
        if self._index is not None and self._index_version == version:
            return self._index
        if version == 0:
            return None  # nothing was ever imported: nothing to fit
        stored = self.cache.get(_INDEX)
        if stored and stored[0] == version and stored[1] == INDEX_VERSION:
            with self._fit_lock:
                self._index, self._index_version = stored[2], version
            return self._index
        with self._start_lock:
            if self._fitting is None or not self._fitting.is_alive():
                self._fitting = threading.Thread(target=self._fit_quietly, name="kb-index", daemon=True)
                self._fitting.start()
        return self._index

    def warm(self) -> None:
        """Load or fit the index in a thread (at start-up), so the first reply finds it ready."""
        if self.version():
            threading.Thread(target=self._fit_quietly, name="kb-index-warm", daemon=True).start()

    def _fit_quietly(self) -> None:
        try:
            self.index()
        except Exception:
            log.exception(kv(event="kb_index_fit_failed"))

    def search(self, question: str, k: int, *, wait: bool = False) -> list[tuple[KbPassage, float]]:
        """The `k` passages that best match `question`, best first, with their cosine.
        `wait`: fit the index now if it is not current (the CLI); replies never wait."""
        index = self.index() if wait else self.index_now()
        if index is None:
            return []
        by_id = self._snapshot()[2]
        out = []
        for pid, score in index.retrieve(question, k):
            found = by_id.get(pid)
            if found is not None:  # gone since the index was fitted: never used
                out.append((found, score))
        return out

