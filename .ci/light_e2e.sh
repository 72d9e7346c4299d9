#!/usr/bin/env bash
# CI, light install: a venv with `pip install .` alone (no extras) must stylize, with
# the batch machinery, and torch must not be importable there.
set -euo pipefail
# Name the failed check: a bare `test` or `grep -q` fails without a word.
trap 'echo "light e2e: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
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
# Outputs go to files before grep: `cmd | grep -q` can end cmd early with SIGPIPE.
"$siamgan" styles > "$work/styles"
grep -q '^vangogh ' "$work/styles"
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
"$siamgan" stylize "$work/photos" -o "$work/out/" --style vangogh > "$work/again"
grep -q 'skipped 3' "$work/again"
# Exit codes: 2 usage error, 1 a failed file; training says what to install.
expect() {  # expect RC CMD...: CMD exits RC; its stderr is kept in $work/err
  local want=$1 rc=0; shift
  "$@" 2>"$work/err" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "light e2e: '$*' exited $rc, expected $want" >&2; cat "$work/err" >&2; exit 1
  fi
}
expect 2 "$siamgan" stylize "$work/photos" -o "$work/out/" --style nosuchstyle
echo "not an image" > "$work/photos/broken.jpg"
expect 1 "$siamgan" stylize "$work/photos" -o "$work/out/" --style vangogh
expect 1 "$siamgan" train --a x --b y --name z
# One clear line, not a traceback (other lines, say a runtime's warning, may come too).
grep -q "pip install 'siamgan\[train\]'" "$work/err"
if grep -q Traceback "$work/err"; then cat "$work/err" >&2; exit 1; fi
echo "light e2e: ok ($(du -sm "$venv" | cut -f1) MB venv)"
