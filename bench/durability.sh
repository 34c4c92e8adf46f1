#!/usr/bin/env bash
# Durable throughput of each storage backend through the whole server: many devices send as
# fast as the per-device rate limit lets them, and every SEND_ACK means the message is on disk.
# Reports acknowledged messages per second and send-to-ack latency for redb and sled.
#
#   bench/durability.sh                    # 200 devices at 40 msg/s each (8,000 msg/s offered)
#   RATE=8000 PAIRS=200 SECS=20 bench/durability.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-8000}
PAIRS=${PAIRS:-200}
SECS=${SECS:-20}
OUT=${OUT:-$(mktemp -d)}
. bench/common.sh

for backend in redb sled; do
  echo "== $backend: $RATE msg/s offered by $PAIRS devices for $SECS s" >&2
  start_natter "$backend"
  "$bench" latency --addr "$natter_tcp" --http "$natter_http" --rate "$RATE" --seconds "$SECS" \
    --pairs "$PAIRS" >"$OUT/durability-$backend.json"
  stop_natter
done

python3 - "$OUT" "$SECS" <<'PY'
import json, sys
out, secs = sys.argv[1], float(sys.argv[2])
print(f"\n{'backend':<8} {'acked/s':>9} {'ack p50 ms':>11} {'ack p99 ms':>11} {'deliver p99 ms':>15} {'errors':>7}")
for backend in ("redb", "sled"):
    r = json.loads(open(f"{out}/durability-{backend}.json").readline())
    ack = r["send_to_ack"]
    print(f"{backend:<8} {r['acked'] / secs:>9.0f} {ack['p50_ms']:>11.2f} {ack['p99_ms']:>11.2f} "
          f"{r['send_to_deliver']['p99_ms']:>15.2f} {r['errors']:>7}")
print(f"raw results: {out}")
PY
