#!/usr/bin/env bash
# Installs the node packages when the lock file changed, type-checks, builds the page, runs the
# unit tests (every vector in spec/vectors, client logic, the page's model), and, given the natter
# binary, natter-conformance's client mode against the client (conformance/README.md; the
# natter-conformance binary next to natter, or $NATTER_CONFORMANCE) and the end-to-end tests
# (the client from node, the page in chromium).
#
#   clients/web/scripts/test.sh [path/to/natter]
set -euo pipefail

# Resolve the binary before changing directory: a relative path would point elsewhere after.
natter=""
if [[ -n "${1:-}" ]]; then
  natter="$(realpath -e "$1")" || { echo "test.sh: no natter binary at $1" >&2; exit 1; }
fi
conformance="${NATTER_CONFORMANCE:-}"
if [[ -z "$conformance" && -n "$natter" ]]; then
  conformance="$(dirname "$natter")/natter-conformance"
fi
cd "$(dirname "$0")/.."

# Install only when the lock file changed since the last install, so a second run works offline.
# `npm ci` empties node_modules first, the stamp with it.
stamp=node_modules/.installed
if [[ ! -e "$stamp" || package-lock.json -nt "$stamp" || package.json -nt "$stamp" ]]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
npx prettier --check . --log-level=warn
npx tsc --noEmit -p .
node scripts/build.mjs
node --test build/test/

# Node 20 has WebSocket behind a flag; later versions have it on by default.
flags=()
node -e 'typeof WebSocket === "function" || process.exit(1)' || flags=(--experimental-websocket)

if [[ -n "$conformance" ]]; then
  [[ -x "$conformance" ]] || { echo "test.sh: no natter-conformance at $conformance" >&2; exit 1; }
  # The client speaks WebSocket only, so the runner serves WebSocket.
  "$conformance" client --ws --cmd "node ${flags[*]} '$PWD/build/conformance-client.mjs'"
fi

if [[ -n "$natter" ]]; then
  if [[ ! -x /usr/bin/chromium ]]; then
    echo "installing chromium (Debian package)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  NATTER_BIN="$natter" node "${flags[@]}" --test build/e2e/
fi
