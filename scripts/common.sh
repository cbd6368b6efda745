# Shared by demo.sh and test.sh: set-up, the release build, and the trained
# example classifier. Sourced, not run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${ALGOBAY_BUILD_DIR:-$ROOT/build}

"$ROOT/scripts/setup.sh"
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$BUILD/onnxruntime/libonnxruntime.so.1.32.0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ALGOBAY=$TARGET_DIR/release/algobay
REGISTRY=$TARGET_DIR/release/algobay-registry
AGENT=$TARGET_DIR/release/algobay-agent

cargo build --release --locked -p algobay-sdk -p algobay-registry -p algobay-agent
# Every stage crate, built to WASM components (the packager would build them on demand too).
cargo build --release --locked --target wasm32-wasip2 \
  -p stage-ocr-pre -p stage-db-box-decode -p stage-nms -p stage-text-line-crop -p stage-ctc-decode -p stage-ocr-rec-post \
  -p stage-vad-pre -p stage-vad-post -p stage-wordpiece -p stage-classify-post -p stage-image-prep -p stage-misbehave \
  -p stage-row-reader -p stage-csv-reader -p stage-impute -p stage-one-hot -p stage-standard-scale -p stage-regression-out -p stage-threshold-decision -p stage-conformal-interval -p stage-image-decode -p stage-grayscale -p stage-resize -p stage-normalize -p stage-flatten -p stage-clip -p stage-log-transform -p stage-pii-mask -p stage-text-normalize -p stage-char-ngram-hash -p stage-temperature-scale -p stage-crop -p stage-invert -p stage-rotate -p stage-equalize -p stage-layout -p stage-min-max-scale -p stage-ordinal-encode -p stage-date-features -p stage-anomaly-score -p stage-chinese-segment -p stage-feature-hash -p stage-wav-decode -p stage-resample -p stage-trim-silence -p stage-frame -p stage-log-mel -p stage-mfcc -p stage-pool -p stage-gain-normalize -p stage-pre-emphasis -p stage-delta

# The Python package: a wheel built with maturin (pinned, in build/maturin)
# over the same Rust SDK and runtime, for the tests to install into a fresh venv.
if ! "$BUILD/maturin/bin/maturin" --version >/dev/null 2>&1; then
  python3 -m venv "$BUILD/maturin"
  "$BUILD/maturin/bin/python" -m pip install --quiet --disable-pip-version-check maturin==1.16.0 >&2
fi
rm -rf "$BUILD/python-wheel"
"$BUILD/maturin/bin/maturin" build --release --locked --quiet -m python/Cargo.toml -o "$BUILD/python-wheel" >&2

# The digits classifier is trained here, with candle, from scikit-learn's data set.
if [ ! -s examples/kits/digits/models/mlp.safetensors ]; then
  mkdir -p examples/kits/digits/models
  "$ALGOBAY" model train-mlp --csv examples/kits/digits/data/digits.csv --layers 64,32,10 \
    -o examples/kits/digits/models/mlp.safetensors
fi

# The example kits' pretrained models, as team algobay: example_models CLI...
# (the `algobay` command with its registry and team token).
example_models() {
  local M=examples/kits
  "$@" model publish $M/ocr/models/det.onnx --name algobay/ppocrv4-det --version 4.0.0 --domain vision --task detection --industry finance --license Apache-2.0
  "$@" model publish $M/ocr/models/rec.onnx --name algobay/ppocrv4-rec --version 4.0.0 --domain vision --task ocr --industry finance --license Apache-2.0
  "$@" model publish $M/vad/models/silero_vad.onnx --name algobay/silero-vad --version 6.2.3 --domain speech --task vad --industry telecom --license MIT
  "$@" model publish $M/embed/models/model.safetensors --architecture bert --arch-config $M/embed/models/config.json \
    --name algobay/all-minilm-l6-v2 --version 1.0.0 --domain nlp --task embedding --license Apache-2.0
  "$@" model publish $M/digits/models/mlp.safetensors --architecture mlp --arch-config <(echo '{"layers":[64,32,10]}') \
    --name algobay/digits-mlp --version 1.0.0 --domain vision --task classification --license Apache-2.0
}

# Stage crates' WASM as algobay tools: example_tools "NAME:KIND ..." CLI...
example_tools() {
  local list=$1 t name kind
  shift
  for t in $list; do
    name=${t%%:*}; kind=${t##*:}
    "$@" tool publish "$TARGET_DIR/wasm32-wasip2/release/stage_${name//-/_}.wasm" --name "algobay/$name" --version 1.0.0 --kind "$kind"
  done
}
