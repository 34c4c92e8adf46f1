#!/usr/bin/env bash
# MQTT devices chatting with natter users (spec chapter 14), with real MQTT clients: Debian's
# mosquitto_pub/mosquitto_sub and paho-mqtt 2.x, against `natter serve --mqtt`, with the
# Python SDK as the natter user. Installs what is missing (mosquitto-clients with apt, paho
# and the SDK in a venv under target/mqtt-venv).
#
#   tests/mqtt/test.sh [path/to/natter]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
natter="$(realpath -e "${1:-${NATTER_BIN:-$root/target/debug/natter}}")"

if ! command -v mosquitto_pub >/dev/null || ! command -v mosquitto_sub >/dev/null; then
  echo "installing mosquitto-clients (Debian package)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
venv="$root/target/mqtt-venv"
stamp="$venv/.installed-$(sha256sum "$root/clients/python/pyproject.toml" | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'paho-mqtt>=2,<3' -e "$root/clients/python"
  touch "$stamp"
fi
exec "$venv/bin/python" "$root/tests/mqtt/chat.py" "$natter"
