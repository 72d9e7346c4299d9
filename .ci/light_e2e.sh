#!/usr/bin/env bash
# CI, light install: a venv with `pip install .` alone (no extras) must stylize, with
# the batch machinery, and torch must not be importable there.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${LIGHT_VENV:-.venv-light}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$venv" && "$venv/bin/pip" install -q .
for module in torch torchvision safetensors skimage; do
  if "$venv/bin/python" -c "import $module" 2>/dev/null; then
    echo "light e2e: $module is importable in the light install" >&2; exit 1
  fi
done
siamgan="$venv/bin/siamgan"
"$siamgan" styles | grep -q '^vangogh '
mkdir -p "$work/photos/trip"
cp examples/rocket.jpg "$work/photos/rocket.jpg"
"$venv/bin/python" - "$work/photos/trip" <<'PY'
import sys
from PIL import Image
im = Image.open("examples/rocket.jpg").convert("RGB")
for i, side in enumerate((300, 500)):
    im.resize((side, side * im.height // im.width)).save(f"{sys.argv[1]}/p{i}.png")
PY
# Two shards, the stroke-scale ladder, seamless tiles, the palette, a report.
for k in 1 2; do
  "$siamgan" stylize "$work/photos" -o "$work/out/" --style vangogh --shard "$k/2" \
    --seamless --palette 0.5 --scale 0.8 --report "$work/report$k.json"
done
test "$(find "$work/out" -type f | wc -l)" -eq 3
"$siamgan" stylize "$work/photos" -o "$work/out/" --style vangogh | grep -q 'skipped 3'
# Exit codes: 2 usage error, 1 a failed file; training says what to install.
set +e
"$siamgan" stylize "$work/photos" -o "$work/out/" --style nosuchstyle 2>/dev/null; test $? -eq 2 || exit 1
echo "not an image" > "$work/photos/broken.jpg"
"$siamgan" stylize "$work/photos" -o "$work/out/" --style vangogh 2>/dev/null; test $? -eq 1 || exit 1
"$siamgan" train --a x --b y --name z 2>"$work/err"; test $? -eq 1 || exit 1
set -e
grep -q "pip install 'siamgan\[train\]'" "$work/err" && test "$(wc -l < "$work/err")" -eq 1
echo "light e2e: ok ($(du -sm "$venv" | cut -f1) MB venv)"
