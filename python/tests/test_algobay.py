"""The `algobay` Python package against a real registry and a real device.

Run by edge-agent/tests/python_package.rs from a fresh virtual environment
with the wheel installed; it passes in the environment:

- ALGOBAY_REGISTRY, ALGOBAY_TOKEN (team `algobay`), ALGOBAY_CA_CERT: the registry;
- ALGOBAY_TRUST: the team's public key; TEST_KEY: its secret key;
- TEST_AGENT: the device's HTTP address, serving algobay/digits-mlp@1.0.0;
- TEST_ROOT: the repository; TEST_ALGOBAY: the `algobay` command;
- TEST_WASM: a stage's WASM file; ORT_DYLIB_PATH: ONNX Runtime.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

import algobay

ROOT = Path(os.environ["TEST_ROOT"])
WORK = Path(tempfile.mkdtemp(prefix="algobay-py-"))


def cli_run(kit, *inputs):
    """What `algobay kit run` prints for the kit on these inputs."""
    args = [os.environ["TEST_ALGOBAY"], "--quiet", "kit", "run", str(kit),
            "--trust", os.environ["ALGOBAY_TRUST"]]
    for i in inputs:
        args += ["--input", str(i)]
    out = subprocess.run(args, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def kit_copy(name, version):
    """An example kit's folder with another version, its paths made absolute."""
    src = ROOT / "examples" / "kits" / name
    text = (src / "Kitfile").read_text()
    text = text.replace('version = "1.0.0"', f'version = "{version}"', 1)
    text = text.replace('"models/', f'"{src}/models/').replace('"samples/', f'"{src}/samples/')
    text = text.replace('"../../stages/', f'"{ROOT}/examples/stages/')
    d = WORK / f"{name}-{version}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "Kitfile").write_text(text)
    return d


class RegistryClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = algobay.Client()  # from the environment alone

    def test_whoami_and_search_find_the_seeded_kit_with_a_typo(self):
        self.assertEqual(self.client.whoami(), ("team", "algobay"))
        names = [a["name"] for a in self.client.search("digts", kind="kit")]
        self.assertIn("algobay/digits-mlp", names)
        shown = self.client.show("algobay/digits-mlp@1.0.0")
        self.assertTrue(shown["digest"].startswith("sha256:"))

    def test_publish_a_model_a_tool_and_a_dataset(self):
        m = self.client.publish_model(
            ROOT / "examples/kits/vad/models/silero_vad.onnx", "algobay/py-vad", "1.0.0",
            domain="speech", task="vad", license="MIT", tags=["python"],
        )
        self.assertEqual((m["name"], m["version"]), ("algobay/py-vad", "1.0.0"))
        t = self.client.publish_tool(
            os.environ["TEST_WASM"], "algobay/py-clip", "1.0.0", kind="preprocess",
            description="clips values", license="Apache-2.0",
        )
        self.assertEqual(t["tool_kind"], "preprocess")
        d = self.client.publish_dataset(
            ROOT / "examples/kits/digits/data/digits.csv", "algobay/py-digits", "1.0.0",
            license="BSD-3-Clause", source="scikit-learn's load_digits", label_column="64", header=False,
        )
        self.assertEqual(d["name"], "algobay/py-digits")
        with self.assertRaises(algobay.NotFoundError):
            self.client.publish_model(WORK / "missing.onnx", "algobay/x", "1.0.0", domain="vision", task="x")

    def test_build_push_and_pull_into_the_cache_then_offline(self):
        out = WORK / "digits-2.kit"
        ref, digest = algobay.build_kit(kit_copy("digits", "2.0.0"), out, os.environ["TEST_KEY"])
        self.assertEqual(ref, "algobay/digits-mlp@2.0.0")
        pushed = self.client.push_kit(out)
        self.assertEqual(pushed["digest"], digest)
        cache = WORK / "cache"
        client = algobay.Client(cache_dir=cache)
        path = client.pull("algobay/digits-mlp@2.0.0")
        self.assertEqual(path.name, digest.split(":")[1] + ".kit")
        self.assertEqual(client.pull("algobay/digits-mlp@2.0.0"), path, "a second pull is the cache")
        # Offline: by reference (pulled before) and by digest; nothing else.
        self.assertEqual(client.pull("algobay/digits-mlp@2.0.0", offline=True), path)
        self.assertEqual(client.pull(digest, offline=True), path)
        with self.assertRaises(algobay.NotFoundError):
            client.pull("algobay/digits-mlp@1.0.0", offline=True)
        kit = algobay.Kit.load(path)
        self.assertEqual(kit.digest, digest)
        self.assertTrue(all(t["passed"] for t in kit.test()))


class InProcessKits(unittest.TestCase):
    def test_kit_run_equals_the_command_line_on_the_example_kits(self):
        digits = WORK / "digits-3.kit"
        algobay.build_kit(kit_copy("digits", "3.0.0"), digits, os.environ["TEST_KEY"])
        kit = algobay.Kit.load(digits)
        self.assertEqual(kit.inputs, {"pixels": "f32[1,64]"})
        row9 = ROOT / "examples/kits/digits/samples/row9.json"
        pixels = np.asarray(json.loads(row9.read_text())["data"], dtype=np.float32).reshape(1, 64)
        got = kit.run({"pixels": pixels})
        self.assertEqual(got["result"], cli_run(digits, row9)["result"])
        self.assertEqual(got["result"][0][0]["label"], "9")
        # Integers are cast to the port's dtype; a wrong kind of value is named.
        self.assertEqual(kit.run({"pixels": pixels.astype(np.float64)})["result"], got["result"])
        with self.assertRaises(algobay.AlgobayError) as e:
            kit.run({"pixel": pixels})
        self.assertIn("pixel", str(e.exception))

        vad = WORK / "vad.kit"
        algobay.build_kit(kit_copy("vad", "1.0.0"), vad, os.environ["TEST_KEY"])
        kit = algobay.Kit.load(vad)
        wav = ROOT / "examples/kits/vad/samples/speech.wav"
        got = kit.run({"audio": wav.read_bytes()})
        self.assertIsInstance(got["probs"], np.ndarray)
        self.assertEqual(got["probs"].dtype, np.float32)
        want = cli_run(vad, wav)
        self.assertEqual(list(got["probs"].shape), want["probs"]["shape"])
        np.testing.assert_allclose(got["probs"].reshape(-1), np.asarray(want["probs"]["data"], np.float32), atol=1e-6)
        self.assertEqual(got["segments"], want["segments"])

    def test_a_kit_signed_by_an_untrusted_key_is_refused(self):
        digits = WORK / "digits-4.kit"
        algobay.build_kit(kit_copy("digits", "4.0.0"), digits, os.environ["TEST_KEY"])
        other = WORK / "other.key.pub"
        keygen = subprocess.run([os.environ["TEST_ALGOBAY"], "--quiet", "keygen", "-o", str(WORK / "other.key")],
                                capture_output=True, text=True)
        self.assertEqual(keygen.returncode, 0, keygen.stderr)
        saved = os.environ.pop("ALGOBAY_TRUST")
        try:
            with self.assertRaises(algobay.VerificationError):
                algobay.Kit.load(digits, trust=[other])
        finally:
            os.environ["ALGOBAY_TRUST"] = saved


class Device(unittest.TestCase):
    def test_oip_inference_with_numpy_arrays_answers_as_the_kit_does_in_process(self):
        agent = algobay.InferenceClient(os.environ["TEST_AGENT"])
        self.assertTrue(agent.ready())
        meta = agent.metadata("digits-mlp")
        self.assertEqual(meta["inputs"][0]["name"], "pixels")
        row4 = ROOT / "examples/kits/digits/samples/row4.json"
        pixels = np.asarray(json.loads(row4.read_text())["data"], dtype=np.float32).reshape(1, 64)
        answer = agent.infer("digits-mlp", {"pixels": pixels})
        result = json.loads(answer["result"])
        self.assertEqual(result[0][0]["label"], "4")
        with self.assertRaises(algobay.AlgobayError) as e:
            agent.infer("digits-mlp", {"pixels": np.zeros((1, 3), np.float32)})
        self.assertIn("400", str(e.exception))


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
