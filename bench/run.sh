#!/usr/bin/env bash
# Measures natter under load and, in the same run on the same machine, mosquitto under the same
# load, so the figures come with a ratio against a peer rather than alone.
#
#   bench/run.sh                     # everything with defaults
#   RATE=1000 SECS=20 IDLE=10000 bench/run.sh
#
# Prints a summary table; the raw JSON of every scenario is kept in $OUT (a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-1000}      # messages per second in total
SECS=${SECS:-20}        # seconds of sending
PAIRS=${PAIRS:-50}      # sender/receiver pairs (20 msg/s each: under the 50/s per-device limit)
IDLE=${IDLE:-10000}     # idle connections (one process may open at most 20,000 files here)
OUT=${OUT:-$(mktemp -d)}

command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; }
. bench/common.sh

start_mosquitto() {
  mqtt_port=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nmax_queued_messages 0\nmax_connections -1\n' \
    "$mqtt_port" >"$OUT/mosquitto.conf"
  mosquitto -c "$OUT/mosquitto.conf" >"$OUT/mosquitto.log" 2>&1 &
  mqtt_pid=$!; pids+=("$mqtt_pid")
  sleep 0.5
}

# idle PID NAME ARGS...: opens idle connections and records the server's RSS before and after.
idle() {
  local pid=$1 name=$2; shift 2
  local before; before=$(rss_kib "$pid")
  "$bench" "$@" --connections "$IDLE" --hold-seconds 30 >"$OUT/$name-idle.json" 2>"$OUT/$name-idle.log" &
  local loader=$!
  for _ in $(seq 600); do [ -s "$OUT/$name-idle.json" ] && break; sleep 0.5; done
  sleep 2
  local after; after=$(rss_kib "$pid")
  kill "$loader" 2>/dev/null || true; wait "$loader" 2>/dev/null || true
  python3 - "$OUT/$name-idle.json" "$before" "$after" <<'PY'
import json, sys
path, before, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
report = json.loads(open(path).readline())
report.update(rss_before_kib=before, rss_after_kib=after,
              kib_per_connection=(after - before) / max(report["open"], 1))
open(path, "w").write(json.dumps(report) + "\n")
PY
}

echo "== natter: latency at $RATE msg/s, then $IDLE idle connections" >&2
start_natter
"$bench" latency --addr "$natter_tcp" --http "$natter_http" --rate "$RATE" --seconds "$SECS" \
  --pairs "$PAIRS" >"$OUT/natter-latency.json"
idle "$natter_pid" natter idle --addr "$natter_tcp" --http "$natter_http"

echo "== mosquitto: the same loads" >&2
start_mosquitto
"$bench" mqtt-latency --addr "127.0.0.1:$mqtt_port" --rate "$RATE" --seconds "$SECS" \
  --pairs "$PAIRS" >"$OUT/mqtt-latency.json"
idle "$mqtt_pid" mqtt mqtt-idle --addr "127.0.0.1:$mqtt_port"

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
load = lambda name: json.loads(open(f"{out}/{name}.json").readline())
n, m = load("natter-latency"), load("mqtt-latency")
ni, mi = load("natter-idle"), load("mqtt-idle")
def row(label, a, b):
    ratio = a / b if b else float("nan")
    print(f"{label:<34} {a:>10.2f} {b:>10.2f} {ratio:>8.2f}")
print(f"\n{'':<34} {'natter':>10} {'mosquitto':>10} {'ratio':>8}")
row("send->deliver p50 (ms)", n["send_to_deliver"]["p50_ms"], m["send_to_deliver"]["p50_ms"])
row("send->deliver p99 (ms)", n["send_to_deliver"]["p99_ms"], m["send_to_deliver"]["p99_ms"])
row("send->ack p50 (ms)", n["send_to_ack"]["p50_ms"], m["send_to_ack"]["p50_ms"])
row("send->ack p99 (ms)", n["send_to_ack"]["p99_ms"], m["send_to_ack"]["p99_ms"])
row("delivered / sent", n["delivered"] / max(n["sent"], 1), m["delivered"] / max(m["sent"], 1))
row("idle connections open", ni["open"], mi["open"])
row("RSS per idle connection (KiB)", ni["kib_per_connection"], mi["kib_per_connection"])
print(f"\nnatter acks are durable (fsync, group commit); mosquitto's QoS 1 acks are in memory.")
print(f"raw results: {out}")
PY
