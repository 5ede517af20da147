#!/usr/bin/env bash
# Builds the Haven browser extension: an unpacked, loadable copy in
# target/extension/ and the same as target/haven-extension.zip (for the
# Chrome Web Store, Google Admin console or Intune). No arguments; needs
# only bash and python3 (for the zip), no network.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="$root/target/extension"
zip="$root/target/haven-extension.zip"
# A config.json someone put in the unpacked copy (tests, a trial install) is kept.
keep=""
if [ -f "$out/config.json" ]; then keep="$(cat "$out/config.json")"; fi
rm -rf "$out" "$zip"
mkdir -p "$out"
cp -R "$here/src/." "$out/"
python3 - "$out" "$zip" <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
    for d, _, files in sorted(os.walk(src)):
        for f in sorted(files):
            if f == "config.json":
                continue  # per install, never shipped
            p = os.path.join(d, f)
            info = zipfile.ZipInfo(os.path.relpath(p, src), (2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(p, "rb") as fh:
                z.writestr(info, fh.read())
PY
if [ -n "$keep" ]; then printf '%s' "$keep" > "$out/config.json"; fi
echo "built $out and $zip (version $(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["version"])' "$out/manifest.json"))"
