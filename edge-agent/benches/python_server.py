"""The server a user would otherwise write: FastAPI + uvicorn + onnxruntime with
the same models. VAD: the WAV read, windowing and segment logic in numpy (the
same as the kit's stages; segments come from examples/golden's transcription of
silero-vad). OCR: rapidocr's own numpy/OpenCV pipeline around the same PP-OCRv4
models. POST /infer with the file as the body; JSON back.

    python python_server.py vad|ocr MODEL_DIR PORT
"""
import io
import os
import sys
import wave

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "golden"))
from make_golden import speech_timestamps  # noqa: E402

kind, model_dir, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = FastAPI()

if kind == "vad":
    sess = ort.InferenceSession(os.path.join(model_dir, "silero_vad.onnx"), providers=["CPUExecutionProvider"])

    @app.post("/infer")
    async def infer(request: Request):
        body = await request.body()
        with wave.open(io.BytesIO(body)) as w:
            sr = w.getframerate()
            audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
        window, ctx = (512, 64) if sr == 16000 else (256, 32)
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros((1, ctx), dtype=np.float32)
        srt = np.array(sr, dtype=np.int64)
        probs = []
        for start in range(0, len(audio), window):
            chunk = audio[start:start + window]
            if len(chunk) < window:
                chunk = np.pad(chunk, (0, window - len(chunk)))
            x = np.concatenate([context, chunk[None, :]], axis=1)
            out, state = sess.run(None, {"input": x, "state": state, "sr": srt})
            context = x[:, -ctx:]
            probs.append(float(out[0, 0]))
        segs = speech_timestamps(probs, len(audio), window, sr=sr)
        return {
            "segments": [{"start": s["start"] / sr, "end": s["end"] / sr,
                          "start_sample": s["start"], "end_sample": s["end"]} for s in segs],
            "probs": probs,
        }
else:
    import cv2
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()

    @app.post("/infer")
    async def infer(request: Request):
        body = await request.body()
        img = cv2.imdecode(np.frombuffer(body, dtype=np.uint8), cv2.IMREAD_COLOR)
        result, _ = engine(img, use_cls=False)
        return {"result": [{"text": t, "score": float(s)} for _b, t, s in (result or [])]}

uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
