"""Times Pillow and OpenCV on the cases the Rust benchmark times (JSON on stdin
and stdout): each case's median over `reps` runs, in milliseconds, one thread."""
import json
import sys
import time

import cv2
import numpy as np
from PIL import Image

cv2.setNumThreads(1)
req = json.load(sys.stdin)
PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR, "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
}
CV = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
      "area": cv2.INTER_AREA, "lanczos4": cv2.INTER_LANCZOS4}
out = []
for c in req["cases"]:
    arr = np.frombuffer(open(c["input"], "rb").read(), dtype=np.uint8).reshape(c["height"], c["width"], 3)
    img = Image.fromarray(arr)
    size = (c["out_width"], c["out_height"])
    if c["lib"] == "pillow":
        f = lambda: img.resize(size, PIL_FILTERS[c["mode"]])
    elif c["lib"] == "opencv" and c["op"] == "resize":
        f = lambda: cv2.resize(arr, size, interpolation=CV[c["mode"]])
    else:
        f = lambda: cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    f()
    t = []
    for _ in range(req["reps"]):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    t.sort()
    out.append(t[len(t) // 2])
json.dump(out, sys.stdout)
