"""A model an outside team brings, with its reference outputs.

usage: outside_model.py KIT_DIR PHOTO

Writes KIT_DIR/models/orientation.onnx: a small linear classifier over a 16x16
gray image (4 classes), made with the onnx package, whose file states a wrong
output shape ([1, 7]; it returns [1, 4]) as real exports often do. The scores
come out of an `If` whose branches differ in shape, so ONNX Runtime cannot
infer the real shape and takes the file's word for it, as it does for
exports with loops. Writes
KIT_DIR/samples/page.pgm (a real photograph, cropped and made gray) and
KIT_DIR/samples/page.expected.json: what the reference pipeline (OpenCV's
INTER_AREA resize to 16x16, /255, the model in numpy, softmax) gives.
"""
import json
import os
import sys

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

kit, photo = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(kit, "models"), exist_ok=True)
os.makedirs(os.path.join(kit, "samples"), exist_ok=True)

rng = np.random.default_rng(7)
w = rng.normal(0, 0.2, (256, 4)).astype(np.float32)
b = np.array([0.1, -0.2, 0.05, 0.0], dtype=np.float32)
then_branch = helper.make_graph(
    [helper.make_node("Identity", ["scores"], ["y_then"])],
    "taken",
    [],
    [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, None)],
)
else_branch = helper.make_graph(
    [helper.make_node("Concat", ["scores", "pad"], ["y_else"], axis=1)],
    "never",
    [],
    [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, None)],
)
graph = helper.make_graph(
    [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["scores"]),
        helper.make_node("ReduceMax", ["x"], ["peak"], keepdims=0),
        helper.make_node("Greater", ["peak", "minus_one"], ["always"]),
        helper.make_node("If", ["always"], ["y"], then_branch=then_branch, else_branch=else_branch),
    ],
    "orientation",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16, 16])],
    # Wrong on purpose: the graph returns [1, 4].
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7])],
    [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(np.array(-1.0, dtype=np.float32), "minus_one"),
        numpy_helper.from_array(np.zeros((1, 1), dtype=np.float32), "pad"),
    ],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, os.path.join(kit, "models", "orientation.onnx"))

gray = np.asarray(Image.open(photo).convert("L").crop((100, 80, 140, 110)))
h, wd = gray.shape
with open(os.path.join(kit, "samples", "page.pgm"), "wb") as f:
    f.write(b"P5\n%d %d\n255\n" % (wd, h) + gray.tobytes())

small = cv2.resize(gray, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32) / np.float32(255)
logits = small.reshape(1, 256) @ w + b
e = np.exp(logits[0] - logits[0].max())
p = e / e.sum()
labels = ["0", "90", "180", "270"]
top = int(np.argmax(p))
with open(os.path.join(kit, "samples", "page.expected.json"), "w") as f:
    json.dump({"result": {"top": [{"label": labels[top], "score": float(p[top])}]}}, f)

# The same kind of page as a colour JPEG, as a scanner sends it: the reference
# pipeline decodes it with OpenCV, resizes (INTER_AREA), then makes it grey
# with Pillow, as the kit's stage does in that order.
crop = cv2.imread(photo, cv2.IMREAD_COLOR)[60:180, 200:360]
ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
assert ok
with open(os.path.join(kit, "samples", "scan.jpg"), "wb") as f:
    f.write(buf.tobytes())
bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
small = cv2.resize(bgr[:, :, ::-1].copy(), (16, 16), interpolation=cv2.INTER_AREA)
grey = np.asarray(Image.fromarray(small).convert("L")).astype(np.float32) / np.float32(255)
logits = grey.reshape(1, 256) @ w + b
e = np.exp(logits[0] - logits[0].max())
q = e / e.sum()
order = np.argsort(-q)
with open(os.path.join(kit, "samples", "scan.expected.json"), "w") as f:
    json.dump({"result": {"top": [{"label": labels[int(order[0])], "score": float(q[order[0]])}]}}, f)
# A wrong expectation on purpose: both fields differ.
with open(os.path.join(kit, "samples", "scan.wrong.json"), "w") as f:
    json.dump({"result": {"top": [{"label": labels[int(order[1])], "score": float(q[order[0]]) + 0.5}]}}, f)
print(labels[top], labels[int(order[0])])
