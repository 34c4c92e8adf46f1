#!/usr/bin/env bash
# Type-checks and tests the Python SDK: the codec against every vector in spec/vectors, the
# session with virtual time, the client against scripted servers, and, with the natter
# binary, live tests against `natter serve` (crash and restart, resume, dedup, groups,
# receipts, TLS, WebSocket, the examples); then natter-conformance's client mode against
# examples/conformance_client.py (conformance/README.md).
#
#   clients/python/scripts/test.sh [path/to/natter [pytest arguments...]]
#
# The binary defaults to $NATTER_BIN, then to the workspace's target/debug/natter;
# natter-conformance to $NATTER_CONFORMANCE, then to the one next to natter. A venv in
# clients/python/.venv holds the package (editable), pytest and mypy; it is made once.
set -euo pipefail

# Resolve the binary before changing directory: a relative path would point elsewhere after.
here="$(cd "$(dirname "$0")/.." && pwd)"
given="${NATTER_BIN:-$here/../../target/debug/natter}"
if [[ $# -gt 0 ]]; then
  given="$1"
  shift
fi
natter="$(realpath -e "$given" 2>/dev/null)" || {
  echo "test.sh: no natter binary at $given" >&2
  echo "usage: $0 [path/to/natter [pytest arguments...]]" >&2
  exit 1
}
[[ -x "$natter" ]] || { echo "test.sh: $natter is not executable" >&2; exit 1; }
cd "$here"

python="${PYTHON:-python3}"
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null && command -v apt-get >/dev/null; then
  echo "installing python3 and python3-venv (Debian packages)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
  || { echo "test.sh: Python 3.9 or later is required" >&2; exit 1; }

# (Re)install when the venv is new or pyproject.toml changed since the last install.
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
if [[ ! -e "$stamp" ]]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -e . "pytest>=7" "mypy>=1.10,<2"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

echo "==> mypy --strict"
.venv/bin/python -m mypy --strict src examples

echo "==> pytest (NATTER_BIN=$natter)"
status=0
NATTER_BIN="$natter" .venv/bin/python -m pytest -q "$@" || status=$?
if [[ $status -eq 5 ]]; then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi

conformance="${NATTER_CONFORMANCE:-$(dirname "$natter")/natter-conformance}"
echo "==> natter-conformance client ($conformance)"
[[ -x "$conformance" ]] || { echo "test.sh: no natter-conformance at $conformance" >&2; exit 1; }
"$conformance" client --cmd "'$here/.venv/bin/python' '$here/examples/conformance_client.py'" ||
  status=1
exit "$status"
