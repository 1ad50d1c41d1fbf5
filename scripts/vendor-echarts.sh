#!/usr/bin/env bash
# Vendor Apache ECharts into the console's static folder from the npm registry, pinned and verified.
#   scripts/vendor-echarts.sh           fetch the pinned tarball, check it, copy dist/echarts.min.js
#   scripts/vendor-echarts.sh --check   only check the committed file against the pin (no network)
# The console never fetches a script at run time: the file is committed; this script is how it got there.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=6.1.0
# The registry's integrity of echarts-6.1.0.tgz (npm view echarts@6.1.0 dist.integrity).
TARBALL_SHA512=q0yaFPggC9FUdsWH4blavRWFmxdrIodbkoKNAjJudAI6CA9gNPxHtV2RcZNEepZVlk4yvBYkOkbk6HIVpIyHZA==
FILE_SHA256=b66b25aeb4df84e33199dc21694014d336d222cbd9deb0e5a7c14bd6aa0d0fd0
DEST=app/static/console/vendor

check_file() {
  local got
  got=$(sha256sum "$DEST/echarts.min.js" | cut -d' ' -f1)
  [ "$got" = "$FILE_SHA256" ] || { echo "vendor-echarts: $DEST/echarts.min.js is not echarts $VERSION (sha256 $got)" >&2; exit 1; }
  echo "vendor-echarts: $DEST/echarts.min.js is echarts $VERSION"
}

if [ "${1:-}" = "--check" ]; then check_file; exit 0; fi

command -v npm >/dev/null 2>&1 || { echo "vendor-echarts: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "echarts@$VERSION" --silent >/dev/null)
tarball="$work/echarts-$VERSION.tgz"
got=$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)
[ "$got" = "$TARBALL_SHA512" ] || { echo "vendor-echarts: tarball integrity mismatch: $got" >&2; exit 1; }
tar -xzf "$tarball" -C "$work" package/dist/echarts.min.js package/LICENSE package/NOTICE
mkdir -p "$DEST"
cp "$work/package/dist/echarts.min.js" "$DEST/echarts.min.js"
cat "$work/package/LICENSE" "$work/package/NOTICE" > "$DEST/echarts.LICENSE.txt"
check_file
