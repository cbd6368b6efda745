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
  -p stage-ocr-pre -p stage-ocr-det-post -p stage-ocr-rec-post \
  -p stage-vad-pre -p stage-vad-post -p stage-wordpiece -p stage-classify-post -p stage-image-prep -p stage-misbehave \
  -p stage-row-reader -p stage-csv-reader -p stage-impute -p stage-one-hot -p stage-standard-scale -p stage-regression-out -p stage-threshold-decision -p stage-conformal-interval

# The digits classifier is trained here, with candle, from scikit-learn's data set.
if [ ! -s examples/kits/digits/models/mlp.safetensors ]; then
  mkdir -p examples/kits/digits/models
  "$ALGOBAY" model train-mlp --csv examples/kits/digits/data/digits.csv --layers 64,32,10 \
    -o examples/kits/digits/models/mlp.safetensors
fi
