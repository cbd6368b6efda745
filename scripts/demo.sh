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
