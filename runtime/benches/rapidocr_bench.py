"""rapidocr_onnxruntime on the same images, angle classifier off: prints JSON with
the median time per image and the median time spent inside ONNX Runtime."""
import json
import statistics
import sys
import time

from rapidocr_onnxruntime import RapidOCR
from rapidocr_onnxruntime.utils import infer_engine

ort_time = [0.0]
_call = infer_engine.OrtInferSession.__call__


def timed(self, *a, **k):
    t = time.perf_counter()
    try:
        return _call(self, *a, **k)
    finally:
        ort_time[0] += time.perf_counter() - t


infer_engine.OrtInferSession.__call__ = timed

images, iters = sys.argv[1:-1], int(sys.argv[-1])
engine = RapidOCR()
blobs = [open(p, "rb").read() for p in images]
for b in blobs:  # warm up
    engine(b, use_cls=False)
totals, orts, texts = [], [], []
for _ in range(iters):
    for b in blobs:
        ort_time[0] = 0.0
        t = time.perf_counter()
        result, _ = engine(b, use_cls=False)
        totals.append(time.perf_counter() - t)
        orts.append(ort_time[0])
texts = [r[1] for r in result]
print(json.dumps({"median_ms": statistics.median(totals) * 1e3, "ort_median_ms": statistics.median(orts) * 1e3, "texts": texts}))
