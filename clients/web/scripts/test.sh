#!/usr/bin/env bash
# Installs the node packages, type-checks, builds the page, runs the unit tests (every vector in
# spec/vectors, client logic), and, given the natter binary, the browser end-to-end test.
#
#   clients/web/scripts/test.sh [path/to/natter]
set -euo pipefail

# Resolve the binary before changing directory: a relative path would point elsewhere after.
natter=""
if [[ -n "${1:-}" ]]; then
  natter="$(realpath -e "$1")" || { echo "test.sh: no natter binary at $1" >&2; exit 1; }
fi
cd "$(dirname "$0")/.."

npm ci --no-audit --no-fund --loglevel=error
npx prettier --check . --log-level=warn
npx tsc --noEmit -p .
node scripts/build.mjs
node --test build/test/

if [[ -n "$natter" ]]; then
  if [[ ! -x /usr/bin/chromium ]]; then
    echo "installing chromium (Debian package)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  # Node 20 has WebSocket behind a flag; later versions have it on by default.
  flags=()
  node -e 'typeof WebSocket === "function" || process.exit(1)' || flags=(--experimental-websocket)
  NATTER_BIN="$natter" node "${flags[@]}" --test build/e2e/
fi
