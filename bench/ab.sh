#!/usr/bin/env bash
# Two natter binaries under the same load, alternating runs, for before/after figures:
# acknowledged messages per second, send-to-ack and send-to-deliver p50/p99, and server CPU
# per acknowledged message (user + system time of the server process, from /proc).
#
#   bench/ab.sh OLD_NATTER NEW_NATTER
#   RATE=4000 PAIRS=100 SECS=15 ROUNDS=3 bench/ab.sh /tmp/natter-before target/release/natter
#
# Build the two binaries first (e.g. a git worktree of the old commit with its own
# CARGO_TARGET_DIR); natter-bench comes from BENCH or target/release/natter-bench.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 2 ] || { echo "usage: $0 OLD_NATTER NEW_NATTER" >&2; exit 2; }
RATE=${RATE:-4000}
PAIRS=${PAIRS:-100}
SECS=${SECS:-15}
ROUNDS=${ROUNDS:-3}
BENCH=${BENCH:-./target/release/natter-bench}
OUT=${OUT:-$(mktemp -d)}
ticks=$(getconf CLK_TCK)
[ -x "$BENCH" ] || { echo "no natter-bench at $BENCH: cargo build --release -p natter-bench" >&2; exit 1; }
ulimit -n 20000 2>/dev/null || true

json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # run LABEL BINARY ROUND
  local label=$1 binary=$2 round=$3 data="$OUT/data-$1-$3"
  "$binary" serve --dev --print-ready --data-dir "$data" --tcp 127.0.0.1:0 --http 127.0.0.1:0 \
    >"$OUT/ready-$label-$round" 2>"$OUT/log-$label-$round" &
  local pid=$!
  for _ in $(seq 100); do [ -s "$OUT/ready-$label-$round" ] && break; sleep 0.1; done
  local tcp http before after
  tcp=$(json_field "$OUT/ready-$label-$round" tcp)
  http=$(json_field "$OUT/ready-$label-$round" http)
  before=$(cpu_ticks "$pid")
  "$BENCH" latency --addr "$tcp" --http "$http" --rate "$RATE" --seconds "$SECS" \
    --pairs "$PAIRS" >"$OUT/result-$label-$round.json"
  after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$label $round $((after - before))" >>"$OUT/cpu"
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round: $RATE msg/s offered by $PAIRS pairs for $SECS s" >&2
  run old "$1" "$round"
  run new "$2" "$round"
done

python3 - "$OUT" "$SECS" "$ticks" "$ROUNDS" <<'PY'
import json, statistics, sys
out, secs, ticks, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cpu = {}
for line in open(f"{out}/cpu"):
    label, rnd, t = line.split()
    cpu[(label, rnd)] = int(t) / ticks
rows = {}
for label in ("old", "new"):
    runs = []
    for rnd in range(1, rounds + 1):
        r = json.loads(open(f"{out}/result-{label}-{rnd}.json").readline())
        acked = max(r["acked"], 1)
        runs.append({
            "acked_per_s": r["acked"] / secs,
            "ack_p50": r["send_to_ack"]["p50_ms"], "ack_p99": r["send_to_ack"]["p99_ms"],
            "deliver_p50": r["send_to_deliver"]["p50_ms"],
            "deliver_p99": r["send_to_deliver"]["p99_ms"],
            "cpu_us_per_msg": cpu[(label, str(rnd))] / acked * 1e6,
            "errors": r["errors"],
        })
    rows[label] = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
print(f"\nmedians over {rounds} rounds")
print(f"{'':<6} {'acked/s':>8} {'ack p50':>8} {'ack p99':>8} {'dlv p50':>8} {'dlv p99':>8} {'cpu us/msg':>11} {'errors':>7}")
for label in ("old", "new"):
    r = rows[label]
    print(f"{label:<6} {r['acked_per_s']:>8.0f} {r['ack_p50']:>8.2f} {r['ack_p99']:>8.2f} "
          f"{r['deliver_p50']:>8.2f} {r['deliver_p99']:>8.2f} {r['cpu_us_per_msg']:>11.1f} {r['errors']:>7.0f}")
o, n = rows["old"], rows["new"]
print(f"new/old: cpu per message {n['cpu_us_per_msg'] / o['cpu_us_per_msg']:.2f}, "
      f"deliver p50 {n['deliver_p50'] / max(o['deliver_p50'], 1e-9):.2f}")
print(f"raw results: {out}")
PY
