#!/usr/bin/env bash
# The main job on the embedded defaults: builds the example kits from real
# pretrained models, checks them, and runs each on its sample input.
source "$(dirname "$0")/common.sh"

KEY=$BUILD/team.key
[ -s "$KEY" ] || "$ALGOBAY" keygen -o "$KEY"
mkdir -p "$BUILD/kits"
step() { printf '\n== %s\n' "$*"; }

for kit in ocr vad embed digits; do
  step "algobay kit build examples/kits/$kit"
  "$ALGOBAY" kit build "examples/kits/$kit" -o "$BUILD/kits/$kit.kit" --key "$KEY"
done

step "algobay kit inspect ocr.kit"
"$ALGOBAY" kit inspect "$BUILD/kits/ocr.kit" --trust "$KEY.pub"

for kit in ocr vad embed digits; do
  step "algobay kit test $kit.kit"
  "$ALGOBAY" kit test "$BUILD/kits/$kit.kit" --trust "$KEY.pub"
done

step "algobay kit run ocr.kit --input invoice.png"
"$ALGOBAY" kit run "$BUILD/kits/ocr.kit" --trust "$KEY.pub" --timings --input examples/kits/ocr/samples/invoice.png
step "algobay kit run vad.kit --input speech.wav (segments)"
"$ALGOBAY" kit run "$BUILD/kits/vad.kit" --trust "$KEY.pub" --timings --input examples/kits/vad/samples/speech.wav \
  | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["segments"], indent=1))'
step "algobay kit run embed.kit --input 'Edge devices run kits offline.' (first 8 of 384 values)"
"$ALGOBAY" kit run "$BUILD/kits/embed.kit" --trust "$KEY.pub" --timings --input 'Edge devices run kits offline.' \
  | python3 -c 'import json,sys; e=json.load(sys.stdin)["embedding"]; print(e["shape"], [round(v,4) for v in e["data"][:8]])'
step "algobay kit run digits.kit --input row9.json"
"$ALGOBAY" kit run "$BUILD/kits/digits.kit" --trust "$KEY.pub" --input examples/kits/digits/samples/row9.json

# ---------------------------------------------------------------- the registry
# A registry on its embedded defaults (sled metadata, a local blob folder, TLS
# with a self-signed certificate), on a free loopback port; this demo's own
# config folder, so no user settings are touched.
DEMO=$BUILD/demo
rm -rf "$DEMO" && mkdir -p "$DEMO"
export XDG_CONFIG_HOME=$DEMO/config
"$REGISTRY" serve --data "$DEMO/registry" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --web-listen 127.0.0.1:0 --log warn > "$DEMO/registry.out" &
REG_PID=$!
trap 'kill $REG_PID ${AGENT_PID:-} 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q '^listening on' "$DEMO/registry.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$DEMO/registry.out" | sed 's|https://127.0.0.1|https://localhost|')
step "algobay-registry serve ($URL)"
cat "$DEMO/registry.out"
OP=$(cat "$DEMO/registry/operator.token")
CA=$DEMO/registry/tls/cert.pem

step "operator: team algobay with its signing key, and a team token"
"$ALGOBAY" --registry "$URL" --token "$OP" --ca-cert "$CA" team create algobay --key "$KEY.pub" --display-name "Algobay examples"
TEAM_TOKEN=$("$ALGOBAY" --registry "$URL" --token "$OP" --ca-cert "$CA" token create --role team --subject algobay)
"$ALGOBAY" login --registry "$URL" --token "$TEAM_TOKEN" --ca-cert "$CA"

step "algobay model publish (the registry reads each model for its signature)"
example_models "$ALGOBAY"

step "algobay tool publish (each stage must implement the stage interface)"
example_tools "ocr-pre:preprocess db-box-decode:postprocess nms:postprocess text-line-crop:postprocess ctc-decode:postprocess ocr-rec-post:postprocess vad-pre:preprocess vad-post:postprocess wordpiece:preprocess classify-post:postprocess image-prep:preprocess" "$ALGOBAY"

step "algobay kit push (golden samples run again in the registry)"
for kit in ocr vad embed digits; do
  "$ALGOBAY" kit push "$BUILD/kits/$kit.kit"
done

step "algobay dataset publish (the registry reads the data for its card)"
"$ALGOBAY" dataset publish examples/kits/digits/data/digits.csv --name algobay/sklearn-digits --version 1.7.2 \
  --license BSD-3-Clause --source "scikit-learn 1.7.2, sklearn/datasets/data/digits.csv.gz" \
  --label-column 64 --domain vision --task classification

step "algobay search / show / coverage"
"$ALGOBAY" search --kind kit
"$ALGOBAY" search ocr
"$ALGOBAY" search minlm            # a typo still finds all-minilm-l6-v2
"$ALGOBAY" show algobay/silero-vad@6.2.3
"$ALGOBAY" show algobay/digits-mlp@1.0.0 --kind kit
"$ALGOBAY" coverage

step "algobay kit pull + kit run (what a device does next)"
"$ALGOBAY" kit pull algobay/ocr-ppocrv4@1.0.0 -o "$DEMO/pulled-ocr.kit"
"$ALGOBAY" kit run "$DEMO/pulled-ocr.kit" --trust "$KEY.pub" --input examples/kits/ocr/samples/invoice.jpg \
  | python3 -c 'import json,sys; print([l["text"] for l in json.load(sys.stdin)["result"]])'

# ---------------------------------------------------------------- a device
step "operator: enterprise acme and its token; acme: a one-time enrollment token"
"$ALGOBAY" --token "$OP" enterprise create acme --display-name "Acme Logistics" --industry logistics
ACME=$("$ALGOBAY" --token "$OP" token create --role enterprise --subject acme)
ENROLL=$("$ALGOBAY" --token "$ACME" device token --label site=hangzhou)

step "algobay-agent run (enrolls with its own key over TLS, then mTLS)"
mkdir -p "$DEMO/device"
cat > "$DEMO/device/agent.toml" <<TOML
registry = "$URL"
ca_cert = "$CA"
enrollment_token = "$ENROLL"
data_dir = "$DEMO/device/data"
name = "line-3-camera"
labels = { line = "3" }
trust = ["$KEY.pub"]
listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
sync_wait_seconds = 5
report_seconds = 2
telemetry_seconds = 1
TOML
"$AGENT" run --config "$DEMO/device/agent.toml" --log warn > "$DEMO/agent.out" &
AGENT_PID=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$DEMO/agent.out" 2>/dev/null && break; sleep 0.1; done
cat "$DEMO/agent.out"
AGENT_URL=$(sed -n 's/.* listening on \([^ ]*\).*/\1/p' "$DEMO/agent.out")
"$ALGOBAY" --token "$ACME" device list

step "algobay deploy create (canary first; the gate promotes after the soak)"
"$ALGOBAY" --token "$ACME" deploy create algobay/ocr-ppocrv4@1.0.0 --selector site=hangzhou --canary 1 --soak 2
for _ in $(seq 1 300); do
  python3 - "$AGENT_URL" <<'PY' && break
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/v1/status"))
sys.exit(0 if (s.get("active") or {}).get("reference") == "algobay/ocr-ppocrv4@1.0.0" else 1)
PY
  sleep 0.2
done
sleep 3
"$ALGOBAY" --token "$ACME" deploy list
"$ALGOBAY" --token "$ACME" device list

TRACE=4bf92f3577b34da6a3ce929d0e0e4736
step "the device serves the kit: POST $AGENT_URL/v1/infer with invoice.png (traceparent 00-$TRACE-…-01)"
python3 - "$AGENT_URL" examples/kits/ocr/samples/invoice.png "$TRACE" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/infer", data=open(sys.argv[2], "rb").read(), method="POST",
                             headers={"traceparent": f"00-{sys.argv[3]}-00f067aa0ba902b7-01"})
print([l["text"] for l in json.load(urllib.request.urlopen(req))["result"]])
PY

step "what the device reported: algobay device telemetry (OTLP metrics at the registry)"
sleep 3
"$ALGOBAY" --token "$ACME" device telemetry

step "the request's trace: algobay device traces --trace $TRACE"
"$ALGOBAY" --token "$ACME" device traces --trace "$TRACE"

# ---------------------------------------------------------------- the loop
step "continuous training: the loop with the policy's defaults (three devices of one enterprise, digits turned 15° more each step, the application's feedback, rounds started by the policy, algobay-trainer, the registry's gate, a canary judged paired against the kit it replaces, then a round on wrong labels)"
cargo bench --locked -q -p algobay-agent --bench training -- --steps 2

# ---------------------------------------------------------------- the line
# A recipe of each kind here (tabular classification and regression, pixels,
# text); scripts/marketplace.sh runs all of them and the pilot.
step "the production line: algobay line run examples/line/LINE.toml --only … (real datasets, trained and checked models, kits of WASM tools, published by their teams; refusals say why)"
"$ALGOBAY" --token "$OP" line run examples/line/LINE.toml --work "$DEMO/line" \
  --only breast-cancer --only mortgage-denial --only diamond-price --only digits --only review-sentiment | tail -n 40
step "algobay coverage (the programme's targets, per industry and domain, counted by the registry)"
"$ALGOBAY" --token "$OP" coverage || true

# ---------------------------------------------------------------- the console
WEB=$(sed -n 's/^console on //p' "$DEMO/registry.out" | sed 's|https://127.0.0.1|https://localhost|')
step "the web console: $WEB (the registry's self-signed certificate, fingerprint above)"
echo "  the marketplace is open to anyone; sign in with a token for the rest:"
echo "  operator (coverage):              $OP"
echo "  enterprise acme (fleet, labelling, training): $ACME"
if [ -t 0 ] && [ -z "${CI:-}" ]; then
  read -r -p "the registry serves the console until you press Enter " _ || true
fi
