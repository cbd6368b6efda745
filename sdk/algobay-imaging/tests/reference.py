"""Writes reference outputs of Pillow and OpenCV for the imaging tests.

usage: reference.py OUT_DIR IMAGE...   (real photographs; JPEG is decoded here)

For each image, crops of several sizes are resized to several targets by every
Pillow filter and every OpenCV interpolation, in RGB and in gray, and turned
gray by both libraries. Inputs and outputs are raw interleaved bytes; OUT_DIR/
cases.json lists them.
"""
import json
import os
import sys

import cv2
import numpy as np
from PIL import Image

out_dir, images = sys.argv[1], sys.argv[2:]
os.makedirs(out_dir, exist_ok=True)

PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
CV_INTERP = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos4": cv2.INTER_LANCZOS4,
}
# (crop width, crop height) -> targets: shrinking by odd and whole factors
# (2x2 and 3x3 take OpenCV's block paths), growing, and mixed.
SHAPES = {
    (427, 640): [(224, 224), (100, 150), (64, 96)],
    (200, 150): [(100, 75), (67, 50), (320, 240), (199, 151)],
    (37, 23): [(101, 59), (12, 8), (37, 60)],
    (300, 210): [(100, 70), (150, 105)],
    (17, 33): [(5, 11), (40, 9)],
}

cases = []
n = 0


def save(arr):
    global n
    n += 1
    name = f"{n:05d}.raw"
    np.ascontiguousarray(arr).tofile(os.path.join(out_dir, name))
    return name


for path in images:
    full = Image.open(path).convert("RGB")
    for (cw, ch), targets in SHAPES.items():
        if cw > full.width or ch > full.height:
            rgb = full.resize((cw, ch), Image.Resampling.BICUBIC)
        else:
            rgb = full.crop((0, 0, cw, ch))
        for mode, img in (("rgb", rgb), ("gray", rgb.convert("L"))):
            arr = np.asarray(img)
            channels = 1 if arr.ndim == 2 else arr.shape[2]
            src = save(arr)
            base = {"input": src, "width": cw, "height": ch, "channels": channels}
            if mode == "rgb":
                cases.append(dict(base, op="gray", lib="pillow", mode="", out_width=cw, out_height=ch,
                                  expected=save(np.asarray(img.convert("L")))))
                cases.append(dict(base, op="gray", lib="opencv", mode="rgb", out_width=cw, out_height=ch,
                                  expected=save(cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY))))
                cases.append(dict(base, op="gray", lib="opencv", mode="bgr", out_width=cw, out_height=ch,
                                  expected=save(cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY))))
            for (tw, th) in targets:
                for name, f in PIL_FILTERS.items():
                    cases.append(dict(base, op="resize", lib="pillow", mode=name, out_width=tw, out_height=th,
                                      expected=save(np.asarray(img.resize((tw, th), f)))))
                for name, f in CV_INTERP.items():
                    cases.append(dict(base, op="resize", lib="opencv", mode=name, out_width=tw, out_height=th,
                                      expected=save(cv2.resize(arr, (tw, th), interpolation=f))))

with open(os.path.join(out_dir, "cases.json"), "w") as f:
    json.dump({"pillow": Image.__version__ if hasattr(Image, "__version__") else "",
               "opencv": cv2.__version__, "cases": cases}, f)
print(len(cases))
