"""Algobay from Python.

The registry client, kit building, verification and the runtime are the Rust
code the ``algobay`` command runs (``algobay._native``); this layer reads the
same configuration, keeps a digest-keyed cache of pulled kits, and speaks
NumPy.

    import algobay, numpy as np

    client = algobay.Client()                     # ALGOBAY_REGISTRY / _TOKEN / _CA_CERT, or the config file
    for a in client.search("digits"):
        print(a["name"], a["version"], a["description"])
    path = client.pull("algobay/digits-mlp@1.0.0")  # cached by digest; pull(..., offline=True) works offline
    kit = algobay.Kit.load(path, trust=["algobay.key.pub"])
    out = kit.run({"x": np.zeros((1, 64), np.float32)})

    agent = algobay.InferenceClient("http://127.0.0.1:8470")
    out = agent.infer("digits-mlp", {"x": np.zeros((1, 64), np.float32)})
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._native import (
    AlgobayError,
    GoldenError,
    NotFoundError,
    PermissionError,
    RegistryConnectionError,
    VerificationError,
)

__all__ = [
    "AlgobayError",
    "Client",
    "GoldenError",
    "InferenceClient",
    "Kit",
    "NotFoundError",
    "PermissionError",
    "RegistryConnectionError",
    "VerificationError",
    "build_kit",
    "config_path",
    "read_config",
]

__version__ = "0.1.0"

PathLike = Union[str, "os.PathLike[str]"]

# Kit dtypes and their NumPy equivalents (little-endian, as kits hold them).
_DTYPES = {
    "f32": np.dtype("<f4"),
    "f16": np.dtype("<f2"),
    "i64": np.dtype("<i8"),
    "i32": np.dtype("<i4"),
    "u8": np.dtype("u1"),
    "i8": np.dtype("i1"),
    "bool": np.dtype("?"),
}
_BY_NUMPY = {v: k for k, v in _DTYPES.items()}


def config_path() -> Path:
    """Where the ``algobay`` command keeps its settings: ``ALGOBAY_CONFIG``,
    else ``$XDG_CONFIG_HOME/algobay/config.toml``, else ``~/.config/algobay/config.toml``."""
    named = os.environ.get("ALGOBAY_CONFIG")
    if named:
        return Path(named)
    home = os.environ.get("XDG_CONFIG_HOME")
    base = Path(home) / "algobay" if home else Path.home() / ".config" / "algobay"
    return base / "config.toml"


def _parse_toml(text: str) -> Dict[str, Any]:
    try:
        import tomllib  # Python 3.11+

        return tomllib.loads(text)
    except ImportError:  # pragma: no cover - older Pythons
        out: Dict[str, Any] = {}
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if "=" in line:
                k, v = (s.strip() for s in line.split("=", 1))
                out[k] = json.loads(v) if v.startswith(("[", '"')) else v
        return out


def read_config() -> Dict[str, Any]:
    """The config file's settings (``registry``, ``token``, ``ca_cert``,
    ``ort_library``, ``cache_dir``, ``key``, ``trust``); empty if there is none."""
    p = config_path()
    if not p.exists():
        if os.environ.get("ALGOBAY_CONFIG"):
            raise NotFoundError(f"config file {p} does not exist")
        return {}
    return _parse_toml(p.read_text())


def _setting(env: str, key: str, given: Optional[str]) -> Optional[str]:
    if given:
        return given
    if os.environ.get(env):
        return os.environ[env]
    value = read_config().get(key)
    return str(value) if value else None


def _cache_root(cache_dir: Optional[PathLike]) -> Path:
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get("ALGOBAY_KIT_CACHE"):
        return Path(os.environ["ALGOBAY_KIT_CACHE"])
    home = os.environ.get("XDG_CACHE_HOME")
    return (Path(home) if home else Path.home() / ".cache") / "algobay" / "kits"


def _trust(trust: Optional[Sequence[PathLike]]) -> List[str]:
    """Trusted keys as the ``algobay`` command finds them: given, then
    ``ALGOBAY_TRUST`` (paths separated by ``os.pathsep``), then the config
    file's ``trust``, then every ``*.pub`` in the config folder's ``trust/``."""
    out = [os.fspath(t) for t in (trust or [])]
    env = os.environ.get("ALGOBAY_TRUST")
    if env:
        out += [p for p in env.split(os.pathsep) if p]
    out += [str(p) for p in read_config().get("trust", [])]
    folder = config_path().parent / "trust"
    if folder.is_dir():
        out += sorted(str(p) for p in folder.glob("*.pub"))
    return out


def _ort_library(given: Optional[PathLike]) -> Optional[str]:
    v = given or os.environ.get("ORT_DYLIB_PATH") or read_config().get("ort_library")
    return os.fspath(v) if v else None


class Client:
    """A registry client in the shape of ``huggingface_hub``'s and MLflow's.

    Settings come from the arguments, else the environment
    (``ALGOBAY_REGISTRY``, ``ALGOBAY_TOKEN``, ``ALGOBAY_CA_CERT``), else the
    config file that ``algobay login`` writes.
    """

    def __init__(
        self,
        registry: Optional[str] = None,
        token: Optional[str] = None,
        ca_cert: Optional[PathLike] = None,
        cache_dir: Optional[PathLike] = None,
    ) -> None:
        url = _setting("ALGOBAY_REGISTRY", "registry", registry)
        if not url:
            raise AlgobayError(
                "no registry: pass registry=, set ALGOBAY_REGISTRY, or run `algobay login`"
            )
        tok = _setting("ALGOBAY_TOKEN", "token", token)
        ca = _setting("ALGOBAY_CA_CERT", "ca_cert", os.fspath(ca_cert) if ca_cert else None)
        pem = Path(ca).read_text() if ca else None
        self._native = _native.Client(url, tok, pem)
        self.cache_dir = _cache_root(cache_dir)

    @property
    def url(self) -> str:
        return self._native.url

    def whoami(self) -> Tuple[str, str]:
        """``(role, subject)`` of the token."""
        return self._native.whoami()

    def search(
        self,
        text: str = "",
        kind: Optional[str] = None,
        *,
        domain: str = "",
        task: str = "",
        industry: str = "",
        team: str = "",
        limit: int = 20,
    ) -> List[Dict[str, Any]]:
        """Artifacts whose names, descriptions or tags match ``text`` (parts of
        names and small typos too), best first, at most ``limit``."""
        out: List[Dict[str, Any]] = []
        token = ""
        while len(out) < limit:
            page = json.loads(
                self._native.search_json(
                    text, kind, domain, task, industry, team, min(limit - len(out), 1000), token
                )
            )
            out += page["artifacts"]
            token = page["next_page_token"]
            if not token:
                break
        return out[:limit]

    def show(self, reference: str, kind: Optional[str] = None) -> Dict[str, Any]:
        """One artifact, ``team/name@version`` or ``sha256:…``."""
        return json.loads(self._native.show_json(reference, kind))

    def publish_model(
        self,
        path: PathLike,
        name: str,
        version: str,
        *,
        domain: str,
        task: str,
        architecture: str = "",
        description: str = "",
        license: str = "",
        industries: Sequence[str] = (),
        tags: Sequence[str] = (),
        card: str = "",
        config: Optional[PathLike] = None,
    ) -> Dict[str, Any]:
        """Publishes an ONNX or safetensors model file (with its architecture's
        config for safetensors)."""
        return json.loads(
            self._native.publish_model_json(
                os.fspath(path), name, version, domain, task, architecture, description,
                license, list(industries), list(tags), card,
                os.fspath(config) if config else None,
            )
        )

    def publish_tool(
        self,
        path: PathLike,
        name: str,
        version: str,
        *,
        kind: str,
        description: str = "",
        license: str = "",
        card: str = "",
    ) -> Dict[str, Any]:
        """Publishes a WASM stage (``kind``: preprocess, postprocess, …)."""
        return json.loads(
            self._native.publish_tool_json(
                os.fspath(path), name, version, kind, description, license, card
            )
        )

    def publish_dataset(
        self,
        path: PathLike,
        name: str,
        version: str,
        *,
        license: str,
        source: str,
        label_column: str = "",
        header: bool = True,
        domain: str = "",
        task: str = "",
        description: str = "",
        industries: Sequence[str] = (),
        tags: Sequence[str] = (),
        card: str = "",
    ) -> Dict[str, Any]:
        """Publishes a CSV dataset; the registry profiles it into a card."""
        return json.loads(
            self._native.publish_dataset_json(
                os.fspath(path), name, version, license, source, label_column, header,
                domain, task, description, list(industries), list(tags), card,
            )
        )

    def push_kit(self, path: PathLike, private_to: str = "") -> Dict[str, Any]:
        """Pushes a kit file; only the blobs the registry lacks are sent."""
        artifact, sent = self._native.push_kit_json(os.fspath(path), private_to)
        out = json.loads(artifact)
        out["bytes_sent"] = sent
        return out

    def pull(self, reference: str, *, offline: bool = False) -> Path:
        """The kit file of ``reference``, from the cache when it holds that
        digest, else pulled (every blob checked) into it. With ``offline``,
        the registry is not asked: a reference pulled before (or a digest)
        is answered from the cache, anything else raises NotFoundError."""
        return _pull(self, reference, self.cache_dir, offline)


def _index_path(root: Path) -> Path:
    return root / "references.json"


def _read_index(root: Path) -> Dict[str, str]:
    try:
        return json.loads(_index_path(root).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _write_index(root: Path, index: Dict[str, str]) -> None:
    tmp = _index_path(root).with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
    os.replace(tmp, _index_path(root))


def _pull(client: Optional[Client], reference: str, root: Path, offline: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    index = _read_index(root)
    if reference.startswith("sha256:"):
        digest: Optional[str] = reference
    elif offline or client is None:
        digest = index.get(reference)
    else:
        digest = client.show(reference, "kit")["digest"]
    if digest is None:
        raise NotFoundError(f"{reference} is not in the kit cache at {root} (pulled online before?)")
    path = root / f"{digest.split(':', 1)[1]}.kit"
    if not path.exists():
        if offline or client is None:
            raise NotFoundError(f"{reference} ({digest}) is not in the kit cache at {root}")
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            part = Path(tmp) / "kit"
            ref, got = client._native.pull_kit(reference, str(part))
            if got != digest:
                raise VerificationError(f"{reference}: pulled {got}, the registry named {digest}")
            os.replace(part, path)
    if not reference.startswith("sha256:"):
        index[reference] = digest
        _write_index(root, index)
    return path


def build_kit(
    directory: PathLike,
    output: PathLike,
    key: Optional[PathLike] = None,
    *,
    cargo: str = "cargo",
    ort_library: Optional[PathLike] = None,
) -> Tuple[str, str]:
    """Builds the kit of the Kitfile in ``directory`` (stages, models, golden
    samples run, signed with ``key``, else ``ALGOBAY_KEY`` or the config's
    ``key``) into ``output``; returns ``(reference, digest)``."""
    k = key or os.environ.get("ALGOBAY_KEY") or read_config().get("key")
    if not k:
        raise AlgobayError("no signing key: pass key=, set ALGOBAY_KEY, or create one with `algobay keygen`")
    return _native.build_kit(
        os.fspath(directory), os.fspath(output), os.fspath(k), cargo, None, _ort_library(ort_library)
    )


Input = Union[np.ndarray, bytes, str, Mapping[str, Any], List[Any]]


def _crossing(name: str, port_type: str, value: Input) -> Tuple[str, str, List[int], bytes]:
    if port_type == "bytes":
        if not isinstance(value, (bytes, bytearray)):
            raise AlgobayError(f"input `{name}` takes bytes, not {type(value).__name__}")
        return ("bytes", "", [], bytes(value))
    if port_type == "text":
        return ("text", "", [], str(value).encode())
    if port_type == "json":
        text = value if isinstance(value, str) else json.dumps(value)
        return ("json", "", [], text.encode())
    arr = np.asarray(value)
    dtype = port_type.split("[", 1)[0]
    want = _DTYPES.get(dtype)
    if want is None:
        raise AlgobayError(f"input `{name}`: port type {port_type} is not a tensor")
    if arr.dtype != want:
        if not np.can_cast(arr.dtype, want, casting="same_kind"):
            raise AlgobayError(f"input `{name}` is {arr.dtype}, the kit takes {dtype}")
        arr = arr.astype(want)
    arr = np.ascontiguousarray(arr)
    return ("tensor", dtype, list(arr.shape), arr.tobytes())


def _value(kind: str, dtype: str, shape: List[int], data: bytes) -> Any:
    if kind == "tensor":
        return np.frombuffer(data, dtype=_DTYPES[dtype]).reshape(shape).copy()
    if kind == "text":
        return data.decode()
    if kind == "json":
        return json.loads(data)
    return data


class Kit:
    """A kit verified and loaded in this process: ``Kit.load(path).run({...})``."""

    def __init__(self, native: Any) -> None:
        self._native = native

    @staticmethod
    def load(
        path: PathLike,
        trust: Optional[Sequence[PathLike]] = None,
        *,
        ort_library: Optional[PathLike] = None,
        cache_dir: Optional[PathLike] = None,
    ) -> "Kit":
        """Reads the kit file, checks every digest and its signatures against
        the trusted keys (see the ``algobay`` command's ``--trust``), and loads it."""
        return Kit(
            _native.Kit.load(
                os.fspath(path), _trust(trust), os.fspath(cache_dir) if cache_dir else None,
                _ort_library(ort_library),
            )
        )

    @property
    def reference(self) -> str:
        return self._native.reference

    @property
    def digest(self) -> str:
        return self._native.digest

    @property
    def signers(self) -> List[str]:
        return self._native.signers

    @property
    def inputs(self) -> Dict[str, str]:
        """Input name → type, as in the Kitfile (``f32[1,64]``, ``bytes``)."""
        return dict(self._native.inputs)

    @property
    def outputs(self) -> Dict[str, str]:
        return dict(self._native.outputs)

    def run(self, inputs: Mapping[str, Input]) -> Dict[str, Any]:
        """One request. Tensor inputs are NumPy arrays (or anything
        ``np.asarray`` takes, cast to the port's dtype when that loses no
        kind); ``bytes``, ``text`` and ``json`` ports take bytes, str and
        JSON-able values. Tensor outputs come back as NumPy arrays, JSON
        outputs parsed."""
        types = self.inputs
        for name in inputs:
            if name not in types:
                raise AlgobayError(f"`{name}` is not an input of {self.reference} (it has {', '.join(types)})")
        raw = {n: _crossing(n, types[n], v) for n, v in inputs.items()}
        out = self._native.run_raw(raw)
        return {n: _value(*v) for n, v in out.items()}

    def test(self) -> List[Dict[str, Any]]:
        """Runs the golden samples: ``[{index, passed, failure}]``."""
        return json.loads(self._native.test_json())


class InferenceClient:
    """A client of a device's Open Inference Protocol endpoints (KServe v2),
    NumPy arrays in and out."""

    _V2 = {
        "f32": "FP32", "f16": "FP16", "i64": "INT64", "i32": "INT32",
        "u8": "UINT8", "i8": "INT8", "bool": "BOOL",
    }

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Optional[bytes] = None) -> Any:
        req = urllib.request.Request(
            self.url + path, data=body, method=method,
            headers={"Content-Type": "application/json"} if body is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except ValueError:
                pass
            raise AlgobayError(f"{method} {path}: {e.code}: {detail}") from None
        except urllib.error.URLError as e:
            raise RegistryConnectionError(f"{self.url}: {e.reason}") from None
        return json.loads(text) if text else None

    def ready(self) -> bool:
        """Whether the device serves a kit."""
        try:
            self._call("GET", "/v2/health/ready")
            return True
        except AlgobayError:
            return False

    def metadata(self, model: str) -> Dict[str, Any]:
        return self._call("GET", f"/v2/models/{model}")

    def infer(self, model: str, inputs: Mapping[str, Input]) -> Dict[str, Any]:
        """One request. Arrays go as their datatype and shape; ``bytes`` as a
        base64 ``BYTES`` tensor; str as a ``BYTES`` string. Outputs come back
        as arrays (numeric), or str/bytes for ``BYTES``."""
        body = {"inputs": []}
        for name, value in inputs.items():
            if isinstance(value, (bytes, bytearray)):
                body["inputs"].append({
                    "name": name, "datatype": "BYTES", "shape": [1],
                    "parameters": {"content_type": "base64"},
                    "data": [base64.b64encode(bytes(value)).decode()],
                })
            elif isinstance(value, str):
                body["inputs"].append({"name": name, "datatype": "BYTES", "shape": [1], "data": [value]})
            else:
                arr = np.ascontiguousarray(np.asarray(value))
                kit_dtype = _BY_NUMPY.get(arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype)
                if kit_dtype is None:
                    raise AlgobayError(f"input `{name}`: dtype {arr.dtype} has no Open Inference Protocol type")
                body["inputs"].append({
                    "name": name, "datatype": self._V2[kit_dtype], "shape": list(arr.shape),
                    "data": arr.reshape(-1).tolist(),
                })
        answer = self._call("POST", f"/v2/models/{model}/infer", json.dumps(body).encode())
        out: Dict[str, Any] = {}
        by_v2 = {v: k for k, v in self._V2.items()}
        for o in answer.get("outputs", []):
            dt = o["datatype"]
            if dt == "BYTES":
                items = o["data"]
                if (o.get("parameters") or {}).get("content_type") == "base64":
                    items = [base64.b64decode(x) for x in items]
                out[o["name"]] = items[0] if len(items) == 1 else items
            else:
                out[o["name"]] = np.asarray(o["data"], dtype=_DTYPES[by_v2[dt]]).reshape(o["shape"])
        return out
