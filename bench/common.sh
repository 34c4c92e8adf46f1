# Shared by the bench scripts: build once, start servers on free loopback ports, clean up.
# Source it after setting OUT (a directory for logs and results).

command -v cargo >/dev/null || { echo "cargo is required" >&2; exit 1; }
cargo build --release --locked -p natter -p natter-bench
bench=./target/release/natter-bench
ulimit -n 20000 2>/dev/null || true
mkdir -p "$OUT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_natter [BACKEND]: a fresh `natter serve --dev`; sets natter_pid, natter_tcp, natter_http.
start_natter() {
  local backend=${1:-redb}
  rm -rf "$OUT/data"
  ./target/release/natter serve --dev --print-ready --backend "$backend" --data-dir "$OUT/data" \
    --tcp 127.0.0.1:0 --http 127.0.0.1:0 >"$OUT/natter.ready" 2>"$OUT/natter-$backend.log" &
  natter_pid=$!; pids+=("$natter_pid")
  for _ in $(seq 100); do [ -s "$OUT/natter.ready" ] && break; sleep 0.1; done
  natter_tcp=$(json_field "$OUT/natter.ready" tcp)
  natter_http=$(json_field "$OUT/natter.ready" http)
}

stop_natter() { kill "$natter_pid" 2>/dev/null || true; wait "$natter_pid" 2>/dev/null || true; }
