"""The FAQ store: entries, the fitted matcher, the hit counters and (`.knowledge`) the
imported documents' passages, in diskcache.

diskcache keeps everything in SQLite under TIERBOT_DATA_DIR, so several worker
processes on one machine share one FAQ (and its counters) and nothing is lost on
restart. The whole FAQ is one value, written with its version number in one
transaction: an import is all-or-nothing, and a reader never sees half of it.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import diskcache

from bot.logs import kv

from .entries import FaqEntry, entry_id_for
from .knowledge import KnowledgeStore
from .matcher import MODEL_VERSION, Matcher
from .normalize import normalize

if TYPE_CHECKING:
    from .encoder import Encoder

__all__ = ["FaqStore"]

log = logging.getLogger("tierbot.faq")

_ENTRIES, _VERSION, _MODEL = "faq:entries", "faq:version", "faq:model"
_COUNTERS = ("hits", "misses", "evictions", "hits_faq", "hits_greeting", "hits_learned", "hits_suggestion",
             "learned_stored", "learned_refused")


class FaqStore:
    """Entries, matcher and counters shared by every process using `directory`."""

    def __init__(self, directory: str | Path, *, threshold: float | None = None, semantic: bool = True) -> None:
        """`threshold` None: the shipped threshold for the FAQ's size (see matcher.threshold_for).
        `semantic`: use the local sentence encoder when it is installed (else lexical only)."""
        self.semantic = semantic
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cache = diskcache.Cache(str(self.directory), timeout=5)
        self.threshold = threshold
        # (matcher, FAQ version it was fitted for), swapped in one assignment so a reader on
        # another thread never pairs one model with another's version.
        self._loaded: tuple[Matcher, int] | None = None
        self._fit_lock = threading.Lock()
        self._entries_cache: tuple[int, dict[str, dict]] | None = None
        self._pending: dict[tuple[str, str], int] = {}
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._closed = False
        # Imported documents' passages live beside the entries (same cache, own keys).
        self.knowledge = KnowledgeStore(self.cache)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        try:
            self.flush()
        finally:
            self.cache.close()

    aclose = close  # the pipeline closes resources with aclose()

    def __enter__(self) -> "FaqStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- entries ----------------------------------------------------------------------
    def version(self) -> int:
        return int(self.cache.get(_VERSION, 0))

    def _snapshot(self) -> dict[str, dict]:
        """The whole FAQ (do not mutate), read from disk only when its version changed."""
        version = self.version()
        if self._entries_cache is None or self._entries_cache[0] != version:
            with self.cache.transact(retry=True):
                self._entries_cache = (self.version(), dict(self.cache.get(_ENTRIES, {})))
        return self._entries_cache[1]

    def _entries(self) -> dict[str, dict]:
        return dict(self._snapshot())

    def _entry(self, entry_id: str) -> dict | None:
        return self._snapshot().get(entry_id)

    def entries(self) -> list[FaqEntry]:
        return [FaqEntry.from_dict(d) for d in self._entries().values()]

    def get(self, entry_id: str) -> FaqEntry | None:
        d = self._entry(entry_id)
        return FaqEntry.from_dict(d) if d else None

    def _write(self, entries: dict[str, dict]) -> int:
        with self.cache.transact(retry=True):
            self.cache.set(_ENTRIES, entries, retry=True)
            return self.cache.incr(_VERSION, retry=True)

    def import_entries(self, entries: Iterable[FaqEntry], *, replace: bool = False) -> tuple[int, int]:
        """Add or update entries (by id) in one transaction; `replace` drops the others.

        Returns (added, updated)."""
        new = list(entries)
        with self.cache.transact(retry=True):
            current = {} if replace else self._entries()
            added = sum(1 for e in new if e.id not in current)
            for e in new:
                current[e.id] = e.to_dict()
            version = self._write(current)
        log.info(kv(event="faq_import", added=added, updated=len(new) - added, replace=replace, version=version))
        return added, len(new) - added

    def add(self, questions: list[str], answer: str, *, tags: list[str] | None = None,
            entry_id: str | None = None) -> FaqEntry:
        """Add questions to the entry with this answer (or id), creating it if needed."""
        questions = [" ".join(q.split()) for q in questions if q and q.strip()]
        if not questions:
            raise ValueError("an FAQ entry needs at least one question")
        if not answer or not answer.strip():
            raise ValueError("an FAQ entry needs an answer")
        eid = entry_id or entry_id_for(answer)
        with self.cache.transact(retry=True):
            current = self._entries()
            entry = FaqEntry.from_dict(current[eid]) if eid in current else FaqEntry(eid, answer.strip(), [])
            entry.answer = answer.strip()
            entry.questions += [q for q in questions if q not in entry.questions]
            entry.tags += [t for t in (tags or []) if t not in entry.tags]
            current[eid] = entry.to_dict()
            self._write(current)
        return entry

    def remove(self, entry_id: str) -> bool:
        with self.cache.transact(retry=True):
            current = self._entries()
            if entry_id not in current:
                return False
            del current[entry_id]
            self._write(current)
            self.cache.delete(("hits", entry_id), retry=True)
        return True

    # -- matcher ----------------------------------------------------------------------
    def matcher_is_current(self) -> bool:
        loaded = self._loaded
        return loaded is not None and loaded[1] == self.version()

    def is_empty(self) -> bool:
        """No entries: nothing to fit, load or ask (cheap: the snapshot is cached per version)."""
        return not self._snapshot()

    def matcher(self) -> Matcher:
        """The matcher for the current entries: in memory, else stored by another process, else fitted.

        Blocks for a load (milliseconds) or a fit (seconds for a large FAQ): the reply path never
        calls it, see `FaqTier`, which runs it in a background thread."""
        version = self.version()
        loaded = self._loaded
        if loaded is not None and loaded[1] == version:
            return loaded[0]
        with self._fit_lock:
            loaded = self._loaded
            if loaded is not None and loaded[1] == version:
                return loaded[0]
            encoder = self.encoder()
            stored = self.cache.get(_MODEL)
            if (stored and stored[0] == version and stored[1] == MODEL_VERSION
                    and stored[2].attach(encoder) and stored[2].kind == ("semantic" if encoder else "lexical")):
                matcher = stored[2]
            else:  # none stored, another FAQ version, or fitted with another encoder (or none)
                entries = self._entries()
                matcher = Matcher.fit([FaqEntry.from_dict(d) for d in entries.values()], encoder=encoder)
                with self.cache.transact(retry=True):
                    if self.version() == version:  # nobody changed the FAQ while we fitted
                        self.cache.set(_MODEL, (version, MODEL_VERSION, matcher), retry=True)
                log.info(kv(event="faq_model_fitted", entries=matcher.n_entries, version=version,
                           threshold=matcher.threshold, matcher=matcher.kind))
            if self.threshold is not None:
                matcher.threshold = self.threshold
            self._loaded = (matcher, version)
            return matcher

    def encoder(self) -> "_StoredVectors | None":
        """The sentence encoder this store fits with, or None (lexical): loads it (~0.3 s) once."""
        if not self.semantic:
            return None
        from .encoder import load_encoder

        encoder = load_encoder()
        return _StoredVectors(encoder, self.cache) if encoder is not None else None

    def current_matcher(self) -> Matcher | None:
        """The last matcher loaded in this process, possibly stale (never blocks)."""
        loaded = self._loaded
        return loaded[0] if loaded is not None else None

    # -- counters -----------------------------------------------------------------------
    # A disk write per lookup would cost more than the lookup itself, so counts are
    # gathered in memory and added to the shared store (atomic `incr`, safe across
    # processes) by a background thread every FLUSH_INTERVAL_S, and on close.
    FLUSH_INTERVAL_S = 0.5

    def count(self, name: str, n: int = 1) -> None:
        self._add(("stat", name), n)

    def count_hit(self, kind: str, entry_id: str) -> None:
        self._add(("stat", "hits"), 1)
        self._add(("stat", f"hits_{kind}"), 1)
        self._add(("hits", entry_id), 1)

    def _add(self, key: tuple[str, str], n: int) -> None:
        with self._pending_lock:
            self._pending[key] = self._pending.get(key, 0) + n
            if self._flusher is None and not self._closed:
                self._flusher = threading.Thread(target=self._flush_loop, name="faq-counters", daemon=True)
                self._flusher.start()
        self._wake.set()

    def _flush_loop(self) -> None:
        while not self._closed:
            self._wake.wait()
            if self._closed:
                break
            self._stop.wait(self.FLUSH_INTERVAL_S)  # gather for a while; close() cuts it short
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a busy disk must not kill the counter thread
                log.exception("flushing FAQ counters failed; will retry")
                self._stop.wait(self.FLUSH_INTERVAL_S)

    def flush(self) -> None:
        """Add the counts gathered in this process to the shared store."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            with self.cache.transact(retry=True):
                for key, n in pending.items():
                    self.cache.incr(key, n, retry=True)
        except Exception:
            with self._pending_lock:  # keep them for the next try
                for key, n in pending.items():
                    self._pending[key] = self._pending.get(key, 0) + n
            raise

    def hit_count(self, entry_id: str) -> int:
        self.flush()
        return int(self.cache.get(("hits", entry_id), 0))

    def stats(self) -> dict[str, int]:
        """Totals for the operators' report: hits (by kind), misses, evictions, ..."""
        self.flush()
        return {name: int(self.cache.get(("stat", name), 0)) for name in _COUNTERS}

    def top_entries(self, n: int = 10) -> list[tuple[str, str, int]]:
        """The most-used entries as (entry id or greeting/learned key, label, hits), most hits first."""
        self.flush()
        entries = self._entries()
        rows = []
        for key in self.cache.iterkeys():
            if isinstance(key, tuple) and len(key) == 2 and key[0] == "hits":
                eid = key[1]
                label = entries[eid]["questions"][0] if eid in entries else eid
                rows.append((eid, label, int(self.cache.get(key, 0))))
        return sorted(rows, key=lambda r: -r[2])[:n]

    def find_exact(self, question: str) -> list[str]:
        """Ids of entries that list `question` (after normalisation) as a variant."""
        q = normalize(question)
        return [eid for eid, d in self._entries().items() if any(normalize(x) == q for x in d["questions"])]


class _StoredVectors:
    """The encoder, with every fitted text's vector kept in the store: encoding costs ~5 ms a
    text, so without this a one-question change to a 10,000-variant FAQ would re-encode all
    of them (a minute) before the new model serves. Lookups encode as usual."""

    def __init__(self, encoder: "Encoder", cache: diskcache.Cache) -> None:
        self.encoder, self.cache = encoder, cache
        self.id, self.dim = encoder.id, encoder.dim

    def encode_one(self, text: str):
        return self.encoder.encode_one(text)

    def encode(self, texts):
        import numpy as np

        keys = [("vec", self.id, t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing = []
        for i, key in enumerate(keys):
            raw = self.cache.get(key, retry=True)
            if raw is None:
                missing.append(i)
            else:
                out[i] = np.frombuffer(raw, dtype=np.float32)
        if missing:
            fresh = self.encoder.encode([texts[i] for i in missing])
            with self.cache.transact(retry=True):
                for i, vec in zip(missing, fresh):
                    out[i] = vec
                    self.cache.set(keys[i], vec.astype(np.float32).tobytes(), retry=True)
        return out
