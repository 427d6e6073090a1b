#!/usr/bin/env bash
# Measures `tdswatch analyze` against tshark on captures made by tdsgen, and the memory tdswatch
# needs per open connection. Prints a markdown table and exits non-zero when a figure misses its
# target (issue acceptance):
#   packets/s >= 1 000 000 on one core, tshark/tdswatch time ratio >= 50,
#   bytes per open connection < 256.
# Method and machine: docs/performance.md.
#
# Usage: bench/analyze-vs-tshark.sh [--quick] [--regen]
#   --quick   10 000 connections instead of 100 000 (smoke run)
#   --regen   rewrite the captures even if they exist
# Environment: BENCH_CPU (core to pin to, default 0), CARGO_TARGET_DIR (as cargo reads it);
#   TDSWATCH / TDSGEN (binaries to use) with BENCH_SKIP_BUILD=1 to test the script without a build.
set -euo pipefail

QUICK=0
REGEN=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --regen) REGEN=1 ;;
    -h | --help)
      sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "analyze-vs-tshark: unknown option $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/bench-out"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CPU="${BENCH_CPU:-0}"
SEED=1
BASE_N=100
if [[ $QUICK == 1 ]]; then N=10000; TAG=10k; else N=100000; TAG=100k; fi

# Targets.
MIN_PPS=1000000
MIN_RATIO=50
MAX_BYTES_PER_CONN=256

say() { printf '%s\n' "$*" >&2; }

# --- tools ------------------------------------------------------------------------------------
if [[ ! -x /usr/bin/time ]]; then
  say "installing GNU time (apt)"
  if [[ $(id -u) == 0 ]]; then
    apt-get update -qq && apt-get install -y -qq time >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq time >/dev/null
  fi
fi
for t in tshark capinfos taskset cargo awk; do
  if ! command -v "$t" >/dev/null 2>&1; then
    say "analyze-vs-tshark: $t is missing (apt-get install tshark util-linux)"
    exit 2
  fi
done

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  say "building release binaries"
  cargo build --release -p tdswatch -p tdsgen >&2
fi
TDSWATCH="${TDSWATCH:-$TARGET_DIR/release/tdswatch}"
TDSGEN="${TDSGEN:-$TARGET_DIR/release/tdsgen}"
if ! "$TDSWATCH" analyze --help >/dev/null 2>&1; then
  say "analyze-vs-tshark: '$TDSWATCH analyze' is not available"
  exit 2
fi

# --- captures ---------------------------------------------------------------------------------
mkdir -p "$OUT"
CONN="$OUT/conn$TAG.pcap"
CONN_TRUTH="$OUT/conn$TAG.truth.jsonl"
OPEN="$OUT/open$TAG.pcap"
BASE="$OUT/open$BASE_N.pcap"

# gen FILE TRUTH_OR_EMPTY ARGS...: writes FILE (and TRUTH) unless present and --regen not given.
gen() {
  local file=$1 truth=$2
  shift 2
  if [[ $REGEN == 0 && -s $file && (-z $truth || -s $truth) ]]; then
    say "using existing $file"
    return
  fi
  local targs=()
  if [[ -n $truth ]]; then targs=(--truth "$truth.tmp"); fi
  "$TDSGEN" --seed "$SEED" --out "$file.tmp" "${targs[@]}" "$@" >&2
  mv "$file.tmp" "$file"
  if [[ -n $truth ]]; then mv "$truth.tmp" "$truth"; fi
}
gen "$CONN" "$CONN_TRUTH" --connections "$N"
gen "$OPEN" "" --open --connections "$N"
gen "$BASE" "" --open --connections "$BASE_N"

# A binary that accepts the command but writes nothing would "win" every figure: refuse it.
BASE_BYTES=$("$TDSWATCH" analyze --format json --no-progress "$BASE" | wc -c)
if [[ $BASE_BYTES == 0 ]]; then
  say "analyze-vs-tshark: '$TDSWATCH analyze --format json' wrote nothing for $BASE"
  exit 2
fi

packets() { capinfos -c -M -T "$1" | awk -F'\t' 'NR == 2 { print $2 }'; }
PACKETS=$(packets "$CONN")
HANDSHAKES=$(grep -c '"client_hellos":1' "$CONN_TRUTH" || true)

# --- measurements -----------------------------------------------------------------------------
# run_timed OUTFILE CMD...: runs CMD pinned to one core, stdout discarded; writes "seconds maxrss_kb"
# (wall time from bash's microsecond clock, peak RSS from GNU time). Fails when CMD fails.
run_timed() {
  local outf=$1
  shift
  local t0 t1
  t0=$EPOCHREALTIME
  if ! /usr/bin/time -f '%M' -o "$outf.rss" taskset -c "$CPU" "$@" >/dev/null; then
    say "analyze-vs-tshark: '$*' failed"
    return 1
  fi
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" -v m="$(tail -n 1 "$outf.rss")" 'BEGIN { printf "%.3f %d\n", b - a, m }' >"$outf"
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# best_of NAME ARGS...: best wall time of seven runs of `tdswatch analyze ARGS $CONN` (a run is
# half a second; the machine's shared cores make single runs vary by a third).
best_of() {
  local name=$1 best="" s i
  shift
  for i in 1 2 3 4 5 6 7; do
    run_timed "$TMP/$name$i" "$TDSWATCH" analyze "$@" --no-progress "$CONN"
    s=$(awk '{ print $1 }' "$TMP/$name$i")
    say "  run $i: ${s} s"
    best=$(awk -v a="$best" -v b="$s" 'BEGIN { if (a == "" || b + 0 < a + 0) print b; else print a }')
  done
  echo "$best"
}

# The headline is `tdswatch analyze FILE` as a user runs it (the report); the JSON lines (one
# object of ~3 KB per connection: every offered suite by name) are timed too, for the record.
say "tdswatch analyze on $CONN, report (best of 7, core $CPU)"
BEST=$(best_of text)
say "tdswatch analyze --format json on $CONN (best of 7, core $CPU)"
BEST_JSON=$(best_of json --format json)

say "tshark on $CONN (one run, core $CPU)"
run_timed "$TMP/tshark" tshark -r "$CONN" -d tcp.port==1433,tds -Y tls.handshake
TSHARK_S=$(awk '{ print $1 }' "$TMP/tshark")
say "  ${TSHARK_S} s"

say "peak memory of tdswatch analyze on $OPEN and on $BASE"
run_timed "$TMP/open" "$TDSWATCH" analyze --no-progress "$OPEN"
run_timed "$TMP/base" "$TDSWATCH" analyze --no-progress "$BASE"
PEAK_OPEN_KB=$(awk '{ print $2 }' "$TMP/open")
PEAK_BASE_KB=$(awk '{ print $2 }' "$TMP/base")

# --- figures ----------------------------------------------------------------------------------
read -r PPS HPS RATIO BPC < <(awk -v p="$PACKETS" -v h="$HANDSHAKES" -v s="$BEST" -v t="$TSHARK_S" \
  -v po="$PEAK_OPEN_KB" -v pb="$PEAK_BASE_KB" -v n="$N" 'BEGIN {
    if (s < 0.01) s = 0.01
    printf "%.0f %.0f %.1f %.1f\n", p / s, h / s, t / s, (po - pb) * 1024 / n
  }')
read -r PPS_JSON RATIO_JSON < <(awk -v p="$PACKETS" -v s="$BEST_JSON" -v t="$TSHARK_S" 'BEGIN {
    if (s < 0.01) s = 0.01
    printf "%.0f %.1f\n", p / s, t / s
  }')

verdict() { # verdict VALUE OP LIMIT -> ok|MISSED
  awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
    ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 < l + 0)
    print ok ? "ok" : "MISSED"
  }'
}
V_PPS=$(verdict "$PPS" ">=" "$MIN_PPS")
V_RATIO=$(verdict "$RATIO" ">=" "$MIN_RATIO")
V_BPC=$(verdict "$BPC" "<" "$MAX_BYTES_PER_CONN")

REPORT="$OUT/results-$TAG.md"
{
  echo "### analyze vs tshark, $N connections ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  echo "Machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo);" \
    "$("$TDSWATCH" --version 2>/dev/null || echo tdswatch);" \
    "$(tshark --version | head -n 1); pinned to core $CPU."
  echo
  echo "| packets | handshakes | tdswatch s | packets/s | handshakes/s | tshark s | ratio | bytes per open connection |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
  echo "| $PACKETS | $HANDSHAKES | $BEST | $PPS | $HPS | $TSHARK_S | $RATIO | $BPC |"
  echo
  echo "With \`--format json\`: $BEST_JSON s, $PPS_JSON packets/s, ratio $RATIO_JSON."
  echo
  echo "| target | figure | limit | result |"
  echo "|---|---:|---:|---|"
  echo "| packets/s on one core | $PPS | >= $MIN_PPS | $V_PPS |"
  echo "| tshark time / tdswatch time | $RATIO | >= $MIN_RATIO | $V_RATIO |"
  echo "| bytes per open connection (peak RSS $PEAK_OPEN_KB KiB - baseline $PEAK_BASE_KB KiB, / $N) | $BPC | < $MAX_BYTES_PER_CONN | $V_BPC |"
} | tee "$REPORT"
say "written to $REPORT"

if [[ $V_PPS != ok || $V_RATIO != ok || $V_BPC != ok ]]; then
  say "analyze-vs-tshark: a figure missed its target"
  exit 1
fi
