"""Talks to an agent through Triton's own Python client, unchanged: health,
metadata and infer over HTTP (JSON and binary tensors) and over gRPC.

    triton_client.py HTTP_ADDR GRPC_ADDR MODEL PIXELS_JSON

Prints one JSON document with what each client saw; exits non-zero if a call fails.
"""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

http_addr, grpc_addr, model, pixels_file = sys.argv[1:5]
with open(pixels_file) as f:
    pixels = np.array(json.load(f), dtype=np.float32).reshape(1, 64)


def answer(result):
    """The kit's JSON output, carried as a one-element BYTES tensor."""
    out = result.as_numpy("result")
    value = out.reshape(-1)[0]
    return json.loads(value.decode() if isinstance(value, bytes) else value)


seen = {}

h = httpclient.InferenceServerClient(url=http_addr)
meta = h.get_model_metadata(model)
http_seen = {
    "live": h.is_server_live(),
    "ready": h.is_server_ready(),
    "model_ready": h.is_model_ready(model),
    "missing_model_ready": h.is_model_ready("no-such-model"),
    "server": h.get_server_metadata()["name"],
    "inputs": meta["inputs"],
    "outputs": [o["name"] for o in meta["outputs"]],
}
for binary in (False, True):
    inp = httpclient.InferInput("pixels", [1, 64], "FP32")
    inp.set_data_from_numpy(pixels, binary_data=binary)
    out = httpclient.InferRequestedOutput("result", binary_data=binary)
    r = h.infer(model, [inp], outputs=[out], request_id="tc-http")
    http_seen["binary" if binary else "json"] = answer(r)
try:
    bad = httpclient.InferInput("pixels", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    h.infer(model, [bad])
    http_seen["bad_shape_error"] = None
except Exception as e:  # the client raises InferenceServerException with the server's message
    http_seen["bad_shape_error"] = str(e)
seen["http"] = http_seen

g = grpcclient.InferenceServerClient(url=grpc_addr)
gmeta = g.get_model_metadata(model, as_json=True)
grpc_seen = {
    "live": g.is_server_live(),
    "ready": g.is_server_ready(),
    "model_ready": g.is_model_ready(model),
    "inputs": gmeta["inputs"],
}
inp = grpcclient.InferInput("pixels", [1, 64], "FP32")
inp.set_data_from_numpy(pixels)
r = g.infer(model, [inp], outputs=[grpcclient.InferRequestedOutput("result")], request_id="tc-grpc")
grpc_seen["answer"] = answer(r)
try:
    g.infer("no-such-model", [inp])
    grpc_seen["missing_model_error"] = None
except Exception as e:
    grpc_seen["missing_model_error"] = str(e)
seen["grpc"] = grpc_seen

print(json.dumps(seen))
