"""JPEG files of every kind the decoder takes, made from real photographs, and
what OpenCV (`imread`) and Pillow (`Image.open`) decode them to.

usage: jpeg_reference.py OUT_DIR PHOTO...

Writes OUT_DIR/cases.json: for each case the JPEG file, its size, and the raw
RGB (or grey) bytes each library decodes it to.
"""
import io
import json
import os
import sys

import cv2
import numpy as np
from PIL import Image

out_dir = sys.argv[1]
cases = []


def add(name, data):
    path = os.path.join(out_dir, name + ".jpg")
    with open(path, "wb") as f:
        f.write(data)
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img.ndim == 3:
        img = img[:, :, ::-1]  # BGR to RGB
    refs = {}
    cv_path = os.path.join(out_dir, name + ".opencv")
    with open(cv_path, "wb") as f:
        f.write(np.ascontiguousarray(img).tobytes())
    refs["opencv"] = os.path.basename(cv_path)
    pil = Image.open(io.BytesIO(data))
    pil = pil.convert("L" if pil.mode == "L" else "RGB")
    pil_path = os.path.join(out_dir, name + ".pillow")
    with open(pil_path, "wb") as f:
        f.write(pil.tobytes())
    refs["pillow"] = os.path.basename(pil_path)
    cases.append({
        "name": name,
        "jpeg": os.path.basename(path),
        "width": img.shape[1],
        "height": img.shape[0],
        "channels": 1 if img.ndim == 2 else 3,
        "expected": refs,
    })


for photo in sys.argv[2:]:
    stem = os.path.splitext(os.path.basename(photo))[0]
    with open(photo, "rb") as f:
        add(stem + "-as-shipped", f.read())
    bgr = cv2.imread(photo, cv2.IMREAD_COLOR)
    # Odd sizes leave partial blocks and MCUs at the right and bottom edges.
    for (w, h) in [(bgr.shape[1], bgr.shape[0]), (333, 251), (17, 9)]:
        img = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
        for sf, tag in [
            (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, "420"),
            (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422, "422"),
            (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440, "440"),
            (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, "444"),
            (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411, "411"),
        ]:
            for q in [60, 95]:
                for prog in [0, 1]:
                    params = [cv2.IMWRITE_JPEG_QUALITY, q, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sf,
                              cv2.IMWRITE_JPEG_PROGRESSIVE, prog]
                    if q == 60 and not prog:
                        params += [cv2.IMWRITE_JPEG_RST_INTERVAL, 3]
                    ok, buf = cv2.imencode(".jpg", img, params)
                    assert ok
                    add(f"{stem}-{w}x{h}-{tag}-q{q}{'-prog' if prog else ''}"
                        f"{'-rst' if q == 60 and not prog else ''}", buf.tobytes())
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        for prog in [0, 1]:
            ok, buf = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 85,
                                                   cv2.IMWRITE_JPEG_PROGRESSIVE, prog])
            add(f"{stem}-{w}x{h}-gray{'-prog' if prog else ''}", buf.tobytes())
        # Pillow's encoder: optimized tables, its own progressive script.
        rgb = Image.fromarray(np.ascontiguousarray(img[:, :, ::-1]))
        for sub in [0, 2]:
            b = io.BytesIO()
            rgb.save(b, "JPEG", quality=88, subsampling=sub, optimize=True, progressive=bool(sub))
            add(f"{stem}-{w}x{h}-pillow-s{sub}", b.getvalue())

with open(os.path.join(out_dir, "cases.json"), "w") as f:
    json.dump({"cases": cases}, f)
print(len(cases), "cases")
