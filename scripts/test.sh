#!/usr/bin/env bash
# Runs every test on real models: sets up what they need first.
source "$(dirname "$0")/common.sh"
cargo test --release --locked -p algobay-runtime -p algobay-sdk -p algobay-registry -p algobay-agent -p algobay-proto -p ocr-common -p algobay-fuzz -p algobay-imaging -p algobay-text \
  -p stage-row-reader -p stage-csv-reader -p tabular-common -p stage-impute -p stage-one-hot -p stage-standard-scale -p stage-regression-out -p stage-threshold-decision -p stage-conformal-interval -p stage-image-decode -p stage-grayscale -p stage-resize -p stage-normalize -p stage-flatten -p stage-clip -p stage-log-transform -p stage-pii-mask -p stage-text-normalize -p stage-char-ngram-hash -p stage-temperature-scale -p stage-crop -p stage-invert -p stage-rotate -p stage-equalize -p stage-min-max-scale -p stage-ordinal-encode -p stage-anomaly-score -p stage-chinese-segment -p stage-feature-hash
