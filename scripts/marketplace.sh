#!/usr/bin/env bash
# Builds the marketplace from a clean state on the embedded defaults: a fresh
# registry (sled and a blob folder, TLS), then the production line over every
# recipe in examples/line (datasets, trained models, tools and kits, published
# by their teams), then the pilot (an enterprise per line of
# examples/line/enterprises.toml, each with a real agent serving a kit of its
# industry), then the coverage table against the programme's targets.
# The registry keeps serving (its console too) until Enter, unless in CI.
source "$(dirname "$0")/common.sh"

MP=$BUILD/marketplace
rm -rf "$MP" && mkdir -p "$MP"
export XDG_CONFIG_HOME=$MP/config
started=$(date +%s)
"$REGISTRY" serve --data "$MP/registry" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --web-listen 127.0.0.1:0 --log warn > "$MP/registry.out" &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q '^listening on' "$MP/registry.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$MP/registry.out" | sed 's|https://127.0.0.1|https://localhost|')
OP=$(cat "$MP/registry/operator.token")
CA=$MP/registry/tls/cert.pem
A=("$ALGOBAY" --registry "$URL" --token "$OP" --ca-cert "$CA")

printf '\n== the example kits from pretrained models (OCR, voice activity, sentence embedding, digits) as team algobay\n'
KEY=$MP/algobay.key
"$ALGOBAY" keygen -o "$KEY" > /dev/null
for kit in ocr vad embed digits; do
  "$ALGOBAY" --quiet kit build "examples/kits/$kit" -o "$MP/$kit.kit" --key "$KEY"
done
"${A[@]}" team create algobay --key "$KEY.pub" --display-name "Algobay examples"
TEAM=("$ALGOBAY" --registry "$URL" --token "$("${A[@]}" token create --role team --subject algobay)" --ca-cert "$CA")
example_models "${TEAM[@]}" > /dev/null
# classify-post is the line's own tool (tabular-tools/classify-post); the digits kit carries the same stage.
example_tools "ocr-pre:preprocess db-box-decode:postprocess nms:postprocess text-line-crop:postprocess ctc-decode:postprocess ocr-rec-post:postprocess vad-pre:preprocess vad-post:postprocess wordpiece:preprocess" "${TEAM[@]}" > /dev/null
for kit in ocr vad embed digits; do
  "${TEAM[@]}" kit push "$MP/$kit.kit"
done

printf '\n== algobay line run examples/line/LINE.toml (registry %s)\n' "$URL"
"${A[@]}" line run examples/line/LINE.toml --work "$MP/line"
printf '\n== algobay line pilot examples/line/LINE.toml (a real agent per enterprise)\n'
"${A[@]}" line pilot examples/line/LINE.toml --work "$MP/line" --agent "$AGENT"
printf '\n== algobay coverage\n'
"${A[@]}" coverage || true
printf '\nthe marketplace took %s s (after the build); report: %s\n' "$(( $(date +%s) - started ))" "$MP/line/report.json"
WEB=$(sed -n 's/^console on //p' "$MP/registry.out" | sed 's|https://127.0.0.1|https://localhost|')
echo "console: $WEB (operator token: $OP)"
if [ -t 0 ] && [ -z "${CI:-}" ]; then
  read -r -p "the registry serves the console until you press Enter " _ || true
fi
