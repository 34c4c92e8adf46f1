#!/usr/bin/env bash
# natter-c against a real server, through crashes:
#
#   scripts/live.sh path/to/natter [N]
#
# bob listens on d/alice/bob over TCP; alice sends N lines over TLS. A third of the way in the
# server is killed (SIGKILL) with SENDs in flight and restarted on the same data directory and
# ports; two thirds in it is stopped with SIGTERM (it drains with GOAWAY) and restarted again.
# Then: every line is acknowledged exactly once, the ones resent after a crash with their
# original seq (seqs are 1..N in send order, so nothing was appended twice or lost), and bob
# got all N in order.
# Needs build/natter-chat built with TLS=1.
# shellcheck disable=SC2016 # check's conditions are evaluated later, so single-quoted
set -euo pipefail

natter="$(realpath -e "$1")"
n=${2:-200}
cd "$(dirname "$0")/.."
chat="$PWD/build/natter-chat"
tmp="$(mktemp -d)"
server=""
pids=()

cleanup() {
  for pid in "${pids[@]}" $server; do kill "$pid" 2>/dev/null || true; done
  if [[ ${keep:-} ]]; then echo "live: logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap '' PIPE # a write to a dead alice then fails with EPIPE, and fail() says so

fail() {
  keep=1
  echo "live: $*" >&2
  for f in alice.err bob.err server.log; do
    echo "--- last lines of $f" >&2
    tail -n 15 "$tmp/$f" >&2 || true
  done
  exit 1
}

# wait_for SECONDS COMMAND...: polls the command every 50 ms.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

acks() { grep -c '^\* sent ' "$tmp/alice.err" 2>/dev/null || true; }
has() { grep -q "$2" "$tmp/$1" 2>/dev/null; }

# A short heartbeat so that PING and PONG happen; limits high enough not to pace the test.
cat >"$tmp/natter.toml" <<'EOF'
[edge.limits]
requests_per_sec = 10000.0
request_burst = 10000.0
[edge.timing]
heartbeat_ms = 1500
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null

# start_server TCP HTTP TLS: starts natter serve and waits for its ready line.
start_server() {
  : >"$tmp/ready"
  "$natter" serve --config "$tmp/natter.toml" --data-dir "$tmp/data" --tcp "$1" --http "$2" \
    --tls "$3" --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" --print-ready \
    >"$tmp/ready" 2>>"$tmp/server.log" 3>&- &
  server=$!
  wait_for 20 test -s "$tmp/ready" || fail "the server did not get ready"
}
field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" "$tmp/ready"; }

start_server 127.0.0.1:0 127.0.0.1:0 127.0.0.1:0
tcp=$(field tcp) http=$(field http) tls=$(field tls)
alice_token=$("$natter" token --data-dir "$tmp/data" --user alice --device c1)
bob_token=$("$natter" token --data-dir "$tmp/data" --user bob --device c1)

NATTER_ADDR=$tcp NATTER_TOKEN=$bob_token NATTER_STATE="$tmp/bob.state" \
  "$chat" --listen d/alice/bob >"$tmp/bob.out" 2>"$tmp/bob.err" &
bob=$!
pids+=("$bob")
wait_for 10 has bob.err '^\* live' || fail "bob did not connect"

# alice reads her lines from a FIFO the script writes, in bursts of 10, so that the server
# dies while SENDs are in flight.
mkfifo "$tmp/lines"
NATTER_ADDR=$tls NATTER_TLS=1 NATTER_TLS_CA="$tmp/cert.pem" NATTER_TLS_NAME=localhost \
  NATTER_TOKEN=$alice_token NATTER_STATE="$tmp/alice.state" \
  "$chat" d/alice/bob <"$tmp/lines" >"$tmp/alice.out" 2>"$tmp/alice.err" &
alice=$!
pids+=("$alice")
exec 3>"$tmp/lines"
sent=0
send_until() { # writes lines up to $1, 10 at a time, 50 ms apart
  while ((sent < $1)); do
    ((sent == 0)) || sleep 0.05
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      ((sent < $1)) || break
      sent=$((sent + 1))
      printf 'msg-%04d\n' "$sent" >&3 || fail 'alice stopped reading'
    done
  done
}

all_acked() { (($(acks) == sent)); }
lives() { (($(grep -c '^\* live' "$tmp/$1") >= $2)); }

# The crash: the server freezes with a burst of SENDs unread in its socket, then dies, so
# that alice must resend them on the next connection.
send_until $((n / 3 - 10))
wait_for 20 all_acked || fail "alice's first sends were not acknowledged"
kill -STOP "$server"
send_until $((n / 3))
sleep 0.2
{ kill -KILL "$server" && wait "$server"; } 2>/dev/null || true
echo "live: killed the server (SIGKILL) with $((sent - $(acks))) of $sent SENDs unanswered"
start_server "$tcp" "$http" "$tls"

# The drain: SIGTERM while both clients are connected and a burst is in flight.
send_until $((2 * n / 3 - 10))
wait_for 20 all_acked || fail "alice did not come back after the crash"
wait_for 20 lives bob.err 2 || fail "bob did not come back after the crash"
send_until $((2 * n / 3))
sleep 0.005
{ kill -TERM "$server" && wait "$server"; } 2>/dev/null || true
echo "live: stopped the server (SIGTERM) with $((sent - $(acks))) of $sent SENDs unanswered"
start_server "$tcp" "$http" "$tls"
send_until "$n"
exec 3>&-

alice_done() { ! kill -0 "$alice" 2>/dev/null; }
wait_for 40 alice_done || fail "alice did not finish"
wait "$alice" || fail "alice exited with an error"
bob_lines() { (($(grep -c '] alice: msg-' "$tmp/bob.out") >= n)); }
wait_for 20 bob_lines || fail "bob did not get all $n messages"
sleep 0.3 # let bob's last ACK go out
kill "$bob"

passed=0 failed=0
# check NAME CONDITION: the condition is a string evaluated later, hence its single quotes.
check() {
  if eval "$2"; then
    passed=$((passed + 1))
    echo "  ok: $1"
  else
    failed=$((failed + 1))
    echo "  FAIL: $1"
  fi
}
expected_bodies() { seq -f 'msg-%04g' 1 "$n"; }
# alice's "* sent ID as #SEQ" lines: the ids, and the seqs sorted by id.
ack_ids() { sed -n 's/^\* sent \([0-9]*\) .*/\1/p' "$tmp/alice.err"; }
ack_seqs() {
  sed -n 's/^\* sent \([0-9]*\) as #\([0-9]*\).*/\1 \2/p' "$tmp/alice.err" | sort -n |
    awk '{ print $2 }'
}
# bob's "[d/alice/bob #SEQ] alice: BODY" lines.
bob_bodies() { sed -n 's/^\[d\/alice\/bob #[0-9]*\] alice: //p' "$tmp/bob.out"; }
bob_seqs() { sed -n 's/^\[d\/alice\/bob #\([0-9]*\)\] alice: .*/\1/p' "$tmp/bob.out"; }
connections() { grep -c '^\* hello' "$tmp/$1"; }

echo "live: $n messages, $(grep -c 'duplicate' "$tmp/alice.err" || true) acked as duplicates" \
  "after a resend, $(connections alice.err) connections by alice, $(connections bob.err) by bob"
check "alice got exactly $n acks" '[[ $(acks) -eq $n ]]'
check "one ack per client_msg_id" '[[ $(ack_ids | sort -u | wc -l) -eq $n ]]'
check "seqs are 1..$n in send order (resends kept their seq)" \
  'diff <(ack_seqs) <(seq 1 "$n") >/dev/null'
check "bob got every message once, in order" 'diff <(bob_bodies) <(expected_bodies) >/dev/null'
check "bob saw seqs 1..$n" 'diff <(bob_seqs) <(seq 1 "$n") >/dev/null'
check "the clients reconnected after the crash and the drain" \
  '[[ $(connections alice.err) -ge 3 ]]'
check "GOAWAY reached a client" 'grep -q "^\* draining" "$tmp/alice.err" "$tmp/bob.err"'
check "bob persisted his cursor" '[[ $(cut -d" " -f1 "$tmp/bob.state") -ge $n ]]'
echo "$passed passed, $failed failed"
((failed == 0)) || fail "checks failed"
