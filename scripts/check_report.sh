#!/usr/bin/env bash
# Render an imbvision HTML report headless with Chromium and screenshot it.
#
#   scripts/check_report.sh REPORT.html OUT.png [WIDTHxHEIGHT]
#
# Exits non-zero when Chromium fails, the screenshot is missing or blank, or
# the page logs console errors / tries to load a resource. Needs `chromium`
# (apt-get install chromium) or set CHROMIUM=/path/to/chrome.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTHxHEIGHT (default 1200x3000)]" >&2
  exit 2
fi
report=$1
out=$2
size=${3:-1200x3000}
chrome=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
if [[ -z "$chrome" ]]; then
  echo "error: chromium not found; install it (apt-get install chromium) or set CHROMIUM" >&2
  exit 2
fi
if [[ ! -f "$report" ]]; then
  echo "error: report not found: $report" >&2
  exit 2
fi
if [[ ! "$size" =~ ^[0-9]+x[0-9]+$ ]]; then
  echo "error: size must look like 1200x3000; got $size" >&2
  exit 2
fi

abs_report=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
mkdir -p "$(dirname "$out")"
abs_out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT

rm -f "$abs_out"
set +e
timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --enable-logging=stderr --v=0 \
  --user-data-dir="$profile" --window-size="${size/x/,}" \
  --screenshot="$abs_out" "file://$abs_report" >"$log" 2>&1
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  echo "error: chromium exited with $rc" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
if [[ ! -s "$abs_out" ]]; then
  echo "error: no screenshot written to $abs_out" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
if grep -E 'CONSOLE|Refused to|Failed to load|net::ERR_' "$log" >&2; then
  echo "error: the page logged console errors or tried to load resources (above)" >&2
  exit 1
fi
# blank check: a rendered report has many distinct byte values in its pixels
python3 - "$abs_out" <<'PY' || exit 1
import sys, zlib, struct
data = open(sys.argv[1], "rb").read()
if not data.startswith(b"\x89PNG"):
    sys.exit("error: screenshot is not a PNG")
idat, pos = b"", 8
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    if kind == b"IDAT":
        idat += data[pos + 8:pos + 8 + n]
    pos += 12 + n
raw = zlib.decompress(idat)
if len(set(raw[::7])) < 8:
    sys.exit("error: screenshot looks blank")
PY
echo "ok: $abs_out"
