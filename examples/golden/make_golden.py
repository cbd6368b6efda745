#!/usr/bin/env python3
"""Makes the example kits' golden samples from real inputs and records, as the
expected outputs, what the reference implementations produce on them.

Run by hand after `scripts/setup.sh` (the outputs are committed):

    build/pyref/bin/python examples/golden/make_golden.py

The reference environment is a virtualenv with packages from PyPI:
    python3 -m venv build/pyref
    build/pyref/bin/pip install onnxruntime==1.32.0 rapidocr-onnxruntime==1.4.4 pillow numpy tokenizers safetensors

- OCR: text rendered with DejaVu Sans (Debian fonts-dejavu-core) into PNG and JPEG;
  expected text and scores are rapidocr_onnxruntime's own, with the angle
  classifier off.
- VAD: speech from espeak-ng, resampled to 16 kHz mono by sox, with silences;
  expected probabilities come from the silero model run in Python's
  onnxruntime exactly as silero-vad's OnnxWrapper feeds it (64 samples of
  context, carried state), and segments from a transcription of silero-vad's
  get_speech_timestamps. (silero-vad itself imports torch, which PyPI only
  ships with its CUDA dependencies.)
- Embedding: token ids from Hugging Face `tokenizers` with the model's own
  tokenizer.json, and the embedding from an independent numpy BERT forward pass
  over the safetensors weights with mean pooling and L2 normalisation, as
  sentence-transformers' all-MiniLM-L6-v2 pipeline does.
- Digits: rows of scikit-learn's digits data set with their true labels.
"""
import json
import os
import subprocess
import sys
import tempfile
import wave

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KITS = os.path.join(ROOT, "examples", "kits")


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")


# ------------------------------------------------------------------ OCR
def ocr():
    from PIL import Image, ImageDraw, ImageFont
    from rapidocr_onnxruntime import RapidOCR

    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 30)
    lines = ["ALGOBAY EDGE KIT 2026", "Invoice No. 48213  Total 1,250.00", "Shipped to Hangzhou warehouse"]
    img = Image.new("RGB", (760, 200), "white")
    d = ImageDraw.Draw(img)
    for i, t in enumerate(lines):
        d.text((24, 20 + i * 58), t, fill="black", font=font)
    sdir = os.path.join(KITS, "ocr", "samples")
    os.makedirs(sdir, exist_ok=True)
    png = os.path.join(sdir, "invoice.png")
    jpg = os.path.join(sdir, "invoice.jpg")
    img.save(png)
    img.save(jpg, quality=92)
    engine = RapidOCR()
    for path, name in [(png, "invoice.png"), (jpg, "invoice.jpg")]:
        result, _ = engine(path, use_cls=False)
        expected = [{"text": text, "score": round(float(score), 4)} for _box, text, score in result]
        print(f"ocr {name}: {[(e['text'], e['score']) for e in expected]}")
        write_json(os.path.join(sdir, name + ".expected.json"), {"result": expected})


# ------------------------------------------------------------------ VAD
def silero_probs(model_path, audio, sr=16000):
    import onnxruntime as ort

    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    window, ctx = (512, 64) if sr == 16000 else (256, 32)
    state = np.zeros((2, 1, 128), dtype=np.float32)
    context = np.zeros((1, ctx), dtype=np.float32)
    probs = []
    for start in range(0, len(audio), window):
        chunk = audio[start:start + window]
        if len(chunk) < window:
            chunk = np.pad(chunk, (0, window - len(chunk)))
        x = np.concatenate([context, chunk[None, :].astype(np.float32)], axis=1)
        out, state = sess.run(None, {"input": x, "state": state, "sr": np.array(sr, dtype=np.int64)})
        context = x[:, -ctx:]
        probs.append(float(out[0, 0]))
    return probs, window


def speech_timestamps(probs, n_samples, window, sr=16000, threshold=0.5, min_speech_ms=250,
                      min_silence_ms=100, speech_pad_ms=30):
    min_speech = sr * min_speech_ms / 1000
    pad = sr * speech_pad_ms / 1000
    min_silence = sr * min_silence_ms / 1000
    neg = max(threshold - 0.15, 0.01)
    triggered, speeches, cur, temp_end = False, [], {}, 0
    for i, p in enumerate(probs):
        if p >= threshold and temp_end:
            temp_end = 0
        if p >= threshold and not triggered:
            triggered = True
            cur = {"start": window * i}
            continue
        if p < neg and triggered:
            if not temp_end:
                temp_end = window * i
            if window * i - temp_end < min_silence:
                continue
            cur["end"] = temp_end
            if cur["end"] - cur["start"] > min_speech:
                speeches.append(cur)
            cur, temp_end, triggered = {}, 0, False
    if cur and n_samples - cur["start"] > min_speech:
        cur["end"] = n_samples
        speeches.append(cur)
    for i, s in enumerate(speeches):
        if i == 0:
            s["start"] = int(max(0, s["start"] - pad))
        if i != len(speeches) - 1:
            silence = speeches[i + 1]["start"] - s["end"]
            if silence < 2 * pad:
                s["end"] += int(silence // 2)
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - silence // 2))
            else:
                s["end"] = int(min(n_samples, s["end"] + pad))
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - pad))
        else:
            s["end"] = int(min(n_samples, s["end"] + pad))
    return speeches


def vad():
    sdir = os.path.join(KITS, "vad", "samples")
    os.makedirs(sdir, exist_ok=True)
    out = os.path.join(sdir, "speech.wav")
    with tempfile.TemporaryDirectory() as tmp:
        a, b = os.path.join(tmp, "a.wav"), os.path.join(tmp, "b.wav")
        subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", a,
                        "Algobay deploys application kits to edge devices."], check=True)
        subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", b,
                        "Hard examples come back for retraining."], check=True)
        # 0.8 s silence, speech, 1.2 s silence, speech, 0.6 s silence; 16 kHz mono 16-bit.
        subprocess.run(["sox", a, "-r", "16000", "-c", "1", "-b", "16", os.path.join(tmp, "a16.wav"),
                        "pad", "0.8", "1.2"], check=True)
        subprocess.run(["sox", b, "-r", "16000", "-c", "1", "-b", "16", os.path.join(tmp, "b16.wav"),
                        "pad", "0", "0.6"], check=True)
        subprocess.run(["sox", os.path.join(tmp, "a16.wav"), os.path.join(tmp, "b16.wav"), out], check=True)
    with wave.open(out) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    probs, window = silero_probs(os.path.join(KITS, "vad", "models", "silero_vad.onnx"), audio)
    speeches = speech_timestamps(probs, len(audio), window)
    segments = {
        "segments": [{"start": round(s["start"] / 16000, 3), "end": round(s["end"] / 16000, 3),
                      "start_sample": s["start"], "end_sample": s["end"]} for s in speeches],
        "duration": len(audio) / 16000,
        "speech_ratio": sum(s["end"] - s["start"] for s in speeches) / len(audio),
    }
    print(f"vad: {len(probs)} windows, segments {[(s['start'], s['end']) for s in segments['segments']]}")
    write_json(os.path.join(sdir, "speech.expected.json"), {
        "segments": segments,
        "probs": {"dtype": "f32", "shape": [len(probs), 1, 1], "data": [round(p, 6) for p in probs]},
    })


# ------------------------------------------------------------------ embedding
def bert_embed(weights, cfg, ids):
    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg["layer_norm_eps"]) * weights[p + ".weight"] + weights[p + ".bias"]

    def lin(x, p):
        return x @ weights[p + ".weight"].T + weights[p + ".bias"]

    from math import erf, sqrt
    verf = np.vectorize(erf)
    n = len(ids)
    x = weights["embeddings.word_embeddings.weight"][ids] \
        + weights["embeddings.position_embeddings.weight"][:n] \
        + weights["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    heads = cfg["num_attention_heads"]
    hd = cfg["hidden_size"] // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = lin(x, p + ".attention.self.query").reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin(x, p + ".attention.self.key").reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin(x, p + ".attention.self.value").reshape(n, heads, hd).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, heads * hd)
        a = ln(lin(ctx, p + ".attention.output.dense") + x, p + ".attention.output.LayerNorm")
        h = lin(a, p + ".intermediate.dense")
        h = 0.5 * h * (1 + verf(h / sqrt(2)))
        x = ln(lin(h, p + ".output.dense") + a, p + ".output.LayerNorm")
    e = x.mean(0)
    return e / np.linalg.norm(e)


def embed():
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    mdir = os.path.join(KITS, "embed", "models")
    weights = {k: v.astype(np.float64) for k, v in load_file(os.path.join(mdir, "model.safetensors")).items()}
    cfg = json.load(open(os.path.join(mdir, "config.json")))
    tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)
    sdir = os.path.join(KITS, "embed", "samples")
    os.makedirs(sdir, exist_ok=True)
    sentences = {
        "edge": "Algobay runs AI application kits on edge devices, offline.",
        "accents": "Café owners in Zürich can't stop (re)reading naïve résumés!",
    }
    ids_cases = []
    for name, text in sentences.items():
        enc = tok.encode(text)
        e = bert_embed(weights, cfg, np.array(enc.ids))
        with open(os.path.join(sdir, name + ".txt"), "w") as f:
            f.write(text)
        write_json(os.path.join(sdir, name + ".expected.json"),
                   {"embedding": {"dtype": "f32", "shape": [1, len(e)], "data": [round(float(v), 7) for v in e]}})
        ids_cases.append({"text": text, "ids": enc.ids})
        print(f"embed {name}: {len(enc.ids)} tokens, first values {e[:3]}")
    extra = ["Hello, World!", "unaffable tokenizers ##hash", "北京欢迎你", "  spaces\tand\nnewlines  ", "e-mail: a.b@c.de"]
    for text in extra:
        ids_cases.append({"text": text, "ids": tok.encode(text).ids})
    write_json(os.path.join(sdir, "wordpiece_cases.json"), ids_cases)


# ------------------------------------------------------------------ digits
def digits():
    rows = [l.strip().split(",") for l in open(os.path.join(KITS, "digits", "data", "digits.csv")) if l.strip()]
    sdir = os.path.join(KITS, "digits", "samples")
    os.makedirs(sdir, exist_ok=True)
    # Held-out rows (every 5th, as `algobay model train-mlp --holdout-every 5` keeps aside).
    for idx in (4, 9, 14):
        r = rows[idx]
        write_json(os.path.join(sdir, f"row{idx}.json"),
                   {"dtype": "f32", "shape": [1, 64], "data": [float(v) for v in r[:64]]})
        write_json(os.path.join(sdir, f"row{idx}.expected.json"), {"result": [[{"label": r[64]}]]})
        print(f"digits row {idx}: label {r[64]}")


if __name__ == "__main__":
    which = sys.argv[1:] or ["ocr", "vad", "embed", "digits"]
    for w in which:
        globals()[w]()
