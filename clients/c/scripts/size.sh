#!/usr/bin/env bash
# Code size and RAM of natter-c, as in README.md: `size` of each object built with -Os, for
# x86-64 and, when arm-none-eabi-gcc is installed, for Cortex-M0+ and Cortex-M4 (Thumb).
#
# RAM is the caller's: sizeof(natter_session) plus the buffers it hands over. The stack bound
# is the sum of every core function's frame (-fstack-usage): the core does not recurse (a
# record nests one level), so no call chain can use more.
set -euo pipefail
cd "$(dirname "$0")/.."

core=(wire frame layout outbox session drive)
out=build/size

# measure LABEL CC FLAGS...: prints one table row per object, then the totals.
measure() {
  local label=$1 cc=$2
  shift 2
  local dir=$out/$label objs=() stack=0
  mkdir -p "$dir"
  for f in "${core[@]}"; do
    "$cc" -std=c99 -Wall -Wextra -Wpedantic -Werror -Os -ffunction-sections -fdata-sections \
      -fstack-usage "$@" -Iinclude -c "src/$f.c" -o "$dir/$f.o"
    objs+=("$dir/$f.o")
  done
  # An object whose only symbol is a natter_session tells its size on this target.
  printf '#include "natter.h"\nchar natter_session_ram[sizeof(natter_session)];\n' >"$dir/ram.c"
  "$cc" -std=c99 "$@" -Iinclude -c "$dir/ram.c" -o "$dir/ram.o"
  local sizer=size
  [[ $cc == arm-none-eabi-gcc ]] && sizer="arm-none-eabi-size"
  local ram
  ram=$($sizer "$dir/ram.o" | awk 'NR == 2 { print $3 }')
  stack=$(cat "$dir"/*.su | awk '{ s += $(NF - 1) } END { print s }')
  echo "$label: text/data/bss per object (bytes)"
  $sizer "${objs[@]}" | awk 'NR > 1 {
      f = $6; sub(".*/", "", f); printf "  %-10s %6d %4d %4d\n", f, $1, $2, $3
      t += $1; d += $2; b += $3 }
    END { printf "  %-10s %6d %4d %4d\n", "total", t, d, b }'
  echo "  sizeof(natter_session) = $ram; stack <= $stack (sum of all frames)"
}

measure x86-64 gcc
if command -v arm-none-eabi-gcc >/dev/null; then
  # newlib's headers (libnewlib-dev), for string.h: the core needs no library to link.
  arm=(-isystem /usr/include/newlib)
  measure cortex-m0plus arm-none-eabi-gcc -mcpu=cortex-m0plus -mthumb "${arm[@]}"
  measure cortex-m4 arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb "${arm[@]}"
else
  echo "arm-none-eabi-gcc not installed: no Cortex-M figures"
fi
