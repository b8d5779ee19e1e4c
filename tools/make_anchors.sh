#!/bin/sh
# The "plain export" anchors for `npm run bench -- anchors --exports OUT` (about 2 GB; 5-10 minutes on 2 cores):
# random-weight full-size files in the published formats (../shared/anchors/make_fullsize.py), the official
# models exported to ONNX as they are (../shared/anchors/export_official.py: generator.onnx at 1024²,
# clip_image.onnx at batch 1, clip_text.onnx), and tools/anchors_extra.py's batch-16 image encoder and 256²
# generator (exported by export_official.py into OUT/g256/).
#
#   REF=<dir with orpatashnik+StyleCLIP and openai+CLIP checkouts> tools/make_anchors.sh OUT
#
# Needs Debian's python3-torch, python3-numpy, python3-packaging, python3-regex and python3-tqdm.
set -eu
OUT=${1:?usage: REF=... tools/make_anchors.sh OUT}
: "${REF:?set REF to a folder holding orpatashnik+StyleCLIP and openai+CLIP checkouts}"
PY=${PYTHON:-/usr/bin/python3}
HERE=$(dirname "$0")
ANCHORS=${ANCHORS:-$HERE/../../shared/anchors}
run() { "$PY" "$HERE/anchors_run.py" "$@"; }
mkdir -p "$OUT"
[ -f "$OUT/ffhq1024.pt" ] || run "$ANCHORS/make_fullsize.py" "$OUT" g
[ -f "$OUT/ViT-B-32.pt" ] || run "$ANCHORS/make_fullsize.py" "$OUT" clip
run "$ANCHORS/export_official.py" "$OUT" --generator "$OUT/ffhq1024.pt" --clip "$OUT/ViT-B-32.pt"
run "$HERE/anchors_extra.py" "$OUT" --clip "$OUT/ViT-B-32.pt"
run "$ANCHORS/export_official.py" "$OUT/g256" --generator "$OUT/g256/ffhq256.pt"
echo "anchors ready: npm run bench -- anchors --exports $OUT"
