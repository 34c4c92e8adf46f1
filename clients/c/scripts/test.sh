#!/usr/bin/env bash
# Runs every natter-c test, installing what is missing (Debian packages):
#
#   clients/c/scripts/test.sh [path/to/natter]
#
# 1. the library and the example, with gcc and with clang, -Wall -Wextra -Wpedantic -Werror;
# 2. every vector of spec/vectors and the session state machine, under ASan and UBSan;
# 3. the libFuzzer targets, seeded with the vectors (FUZZ_SECONDS each for the decoder, default
#    20, and half that for the session);
# 4. code size and RAM (scripts/size.sh), for Cortex-M too when arm-none-eabi-gcc installs;
# 5. given the natter binary, natter-conformance's client mode against build/conformance-client
#    (conformance/README.md; the natter-conformance binary next to natter, or
#    $NATTER_CONFORMANCE), and the live test against a real server (scripts/live.sh).
set -euo pipefail

natter=""
if [[ -n "${1:-}" ]]; then
  natter="$(realpath -e "$1")" || { echo "test.sh: no natter binary at $1" >&2; exit 1; }
fi
cd "$(dirname "$0")/.."

step() { printf '\n==> natter-c: %s\n' "$*"; }

updated=""
install() { # install PACKAGE...: apt-get install, after one apt-get update
  [[ -n $updated ]] || { apt-get update -qq >/dev/null && updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
step "toolchain"
{ command -v gcc && command -v make; } >/dev/null || install gcc make libc6-dev
command -v clang >/dev/null || install clang
[[ -e /usr/include/openssl/ssl.h ]] || install libssl-dev
command -v openssl >/dev/null || install openssl
# Optional: without it the size report has no Cortex-M figures. Compiling needs newlib's
# headers only, not its 370 MB of libraries.
command -v arm-none-eabi-gcc >/dev/null || install gcc-arm-none-eabi libnewlib-dev ||
  echo "gcc-arm-none-eabi is not installable: skipping the Cortex-M build"

step "build with gcc and clang (C99, -Werror)"
make -s -j2 TLS=1
make -s -j2 B=build/clang CC=clang TLS=1

step "vectors and session state machine, with AddressSanitizer and UBSan"
make -s -j2 check

step "fuzzing, seeded with the vectors"
make -s -j2 fuzz
rm -rf build/fuzz/seeds
mkdir -p build/fuzz/seeds build/fuzz/corpus_decode build/fuzz/corpus_session
build/asan/vectors --corpus build/fuzz/seeds ../../spec/vectors/*.txt >/dev/null
fuzz() { # fuzz TARGET SECONDS
  build/fuzz/"$1" -max_total_time="$2" -print_final_stats=1 -artifact_prefix=build/fuzz/ \
    build/fuzz/corpus_"${1#fuzz_}" build/fuzz/seeds 2>build/fuzz/"$1".log ||
    { tail -n 40 build/fuzz/"$1".log; echo "$1: crashed, input in build/fuzz/" >&2; exit 1; }
  echo "$1: $(sed -n 's/^stat::number_of_executed_units: *//p' build/fuzz/"$1".log) runs" \
    "in $2 s, no crash"
}
seconds=${FUZZ_SECONDS:-20}
fuzz fuzz_decode "$seconds"
fuzz fuzz_session $((seconds / 2))

step "code size and RAM"
scripts/size.sh

if [[ -n "$natter" ]]; then
  step "conformance: natter-conformance client, minimal profile"
  conformance="${NATTER_CONFORMANCE:-$(dirname "$natter")/natter-conformance}"
  [[ -x "$conformance" ]] || { echo "test.sh: no natter-conformance at $conformance" >&2; exit 1; }
  "$conformance" client --minimal --cmd "'$PWD/build/conformance-client'"

  step "live: against natter serve, through SIGKILL and SIGTERM"
  scripts/live.sh "$natter"
else
  echo "no natter binary given: skipping the live test"
fi
echo "natter-c: all tests passed"
