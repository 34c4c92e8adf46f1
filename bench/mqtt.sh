#!/usr/bin/env bash
# The same load three ways in one run: native natter devices, MQTT devices sending QoS 1 into
# natter (spec chapter 14), and the same MQTT clients on mosquitto: acked msg/s, send-to-ack
# and send-to-deliver p50/p99, and server CPU per acknowledged message (user + system time,
# from /proc).
#
#   bench/mqtt.sh                      # 1,000 msg/s from 50 device pairs for 15 s
#   RATE=2000 PAIRS=100 SECS=20 bench/mqtt.sh
#
# natter's PUBACK waits for the fsynced SEND_ACK; mosquitto acknowledges QoS 1 from memory.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-1000}
SECS=${SECS:-15}
PAIRS=${PAIRS:-50}
OUT=${OUT:-$(mktemp -d)}

command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; }
. bench/common.sh
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks=$(getconf CLK_TCK)

echo "== natter: native then MQTT devices at $RATE msg/s from $PAIRS pairs for $SECS s" >&2
rm -rf "$OUT/data"
./target/release/natter serve --dev --print-ready --data-dir "$OUT/data" --tcp 127.0.0.1:0 \
  --http 127.0.0.1:0 --mqtt 127.0.0.1:0 >"$OUT/natter.ready" 2>"$OUT/natter.log" &
natter_pid=$!; pids+=("$natter_pid")
for _ in $(seq 100); do [ -s "$OUT/natter.ready" ] && break; sleep 0.1; done
before=$(cpu_ticks "$natter_pid")
"$bench" latency --addr "$(json_field "$OUT/natter.ready" tcp)" \
  --http "$(json_field "$OUT/natter.ready" http)" --rate "$RATE" --seconds "$SECS" \
  --pairs "$PAIRS" >"$OUT/native.json"
echo "$(( $(cpu_ticks "$natter_pid") - before ))" >"$OUT/native.cpu"
before=$(cpu_ticks "$natter_pid")
"$bench" mqtt-natter --addr "$(json_field "$OUT/natter.ready" mqtt)" \
  --http "$(json_field "$OUT/natter.ready" http)" --rate "$RATE" --seconds "$SECS" \
  --pairs "$PAIRS" >"$OUT/natter.json"
echo "$(( $(cpu_ticks "$natter_pid") - before ))" >"$OUT/natter.cpu"
stop_natter

echo "== mosquitto: the same clients and load" >&2
port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nmax_queued_messages 0\n' \
  "$port" >"$OUT/mosquitto.conf"
mosquitto -c "$OUT/mosquitto.conf" >"$OUT/mosquitto.log" 2>&1 &
mqtt_pid=$!; pids+=("$mqtt_pid")
sleep 0.5
before=$(cpu_ticks "$mqtt_pid")
"$bench" mqtt-latency --addr "127.0.0.1:$port" --rate "$RATE" --seconds "$SECS" \
  --pairs "$PAIRS" >"$OUT/mosquitto.json"
echo "$(( $(cpu_ticks "$mqtt_pid") - before ))" >"$OUT/mosquitto.cpu"

python3 - "$OUT" "$SECS" "$ticks" <<'PY'
import json, sys
out, secs, ticks = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
rows = {}
for name in ("native", "natter", "mosquitto"):
    r = json.loads(open(f"{out}/{name}.json").readline())
    cpu = int(open(f"{out}/{name}.cpu").read()) / ticks
    rows[name] = (r["acked"] / secs, r["send_to_ack"]["p50_ms"], r["send_to_ack"]["p99_ms"],
                  r["send_to_deliver"]["p50_ms"], r["send_to_deliver"]["p99_ms"],
                  cpu / max(r["acked"], 1) * 1e6, r["errors"])
print(f"\n{'':<10} {'acked/s':>8} {'ack p50':>8} {'ack p99':>8} {'dlv p50':>8} {'dlv p99':>8} {'cpu us/msg':>11} {'errors':>7}")
for name, r in rows.items():
    print(f"{name:<10} {r[0]:>8.0f} {r[1]:>8.2f} {r[2]:>8.2f} {r[3]:>8.2f} {r[4]:>8.2f} {r[5]:>11.1f} {r[6]:>7}")
m = rows["mosquitto"]
for name in ("native", "natter"):
    n = rows[name]
    print(f"{name}/mosquitto: acked/s {n[0] / m[0]:.2f}, cpu per message {n[5] / max(m[5], 1e-9):.1f}x, "
          f"deliver p50 {n[3] / max(m[3], 1e-9):.1f}x, p99 {n[4] / max(m[4], 1e-9):.1f}x")
print(f"raw results: {out}")
PY
