#!/usr/bin/env bash
# Run the WebSocket engine benchmark and write its summary.
#
#   bench/run.sh [--reps N] [--configs a,b] [--tests x,y] [--server-cpu 0] [--client-cpu 1] [--worker-cpus 0,1]
#                [--max-foreign CORES] [--floor] [--against REV] [--compiled]
#   bench/run.sh --resummarize bench/results/bench-<stamp>.jsonl   (no measuring)
#
# Defaults: 3 repetitions of wsguard, wsguard-uvloop, websockets, websockets-uvloop, ws-sansio,
# ws-sansio-uvloop on echo64_c64, echo64_c1, echo16k_c8, latency2k, idle5000 (~12 min).
# Writes bench/results/bench-<stamp>.jsonl (gitignored), server logs in
# bench/results/bench-<stamp>-logs/ (gitignored) and bench/results/SUMMARY-<date>.md (kept).
# --floor also builds floor.c into /tmp and records the machine's floor (C, ~1 min).
# --against REV exports git revision REV's src/ into /tmp (removed at exit) for the configs
# wsguard-full-against and wsguard-full-against-uvloop: the working tree against REV, one run.
# --compiled builds this tree with WSGUARD_COMPILE=1 (mypyc, setup.py) into /tmp (removed at
# exit) for the configs wsguard-full-compiled and wsguard-full-compiled-uvloop.
# The summary repeats its overview over the samples taken while other processes used at most
# 0.2 cores (--max-foreign drops the others everywhere instead).
# Creates nothing outside bench/results/ and /tmp. Loopback (127.0.0.1) only.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
reps=3
floor=0
max_foreign=""
resummarize=""
against=""
compiled=0
more_baselines=""  # --compiled adds wsguard-full and wsguard-full-uvloop
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --reps=*) reps="${1#*=}"; shift ;;
    --configs|--tests|--server-cpu|--client-cpu|--worker-cpus|--echo-client|--base-port|--max-total-s)
      pass+=("$1" "$2"); shift 2 ;;
    --max-foreign) max_foreign="$2"; shift 2 ;;
    --floor) floor=1; shift ;;
    --resummarize) resummarize="$2"; shift 2 ;;
    --against) against="$2"; shift 2 ;;
    --compiled) compiled=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$reps" in ''|*[!0-9]*) echo "bench/run.sh: --reps needs a number" >&2; exit 2 ;; esac

summary_name() {
  local name="bench/results/SUMMARY-$(date +%Y-%m-%d).md"
  if [ -e "$name" ]; then
    name="bench/results/SUMMARY-$(date +%Y-%m-%d-%H%M%S).md"
  fi
  echo "$name"
}

write_summary() {  # write_summary RAW.jsonl SUMMARY.md FOOTER
  local extra=(--also-clean 0.2)
  if [ -n "$max_foreign" ]; then
    extra=(--max-foreign "$max_foreign")
  fi
  "$PY" bench/summarize.py "$1" \
    --baseline "websockets,ws-sansio,wsguard-redis-w1,wsguard-full-against,wsguard-full-against-uvloop$more_baselines" \
    --out "$2" "${extra[@]}"
  {
    echo
    echo "$3 Raw samples: \`$1\` (not committed)."
    echo "Method: shared/research/perf-anchors.md section 3; how to read: bench/README.md."
  } >> "$2"
  echo
  echo "== summary: $2"
  cat "$2"
}

if [ -n "$resummarize" ]; then
  if [ ! -f "$resummarize" ]; then
    echo "bench/run.sh: no such file: $resummarize" >&2
    exit 1
  fi
  write_summary "$resummarize" "$(summary_name)" "Re-summarized from an earlier run."
  exit 0
fi

if [ ! -x "$PY" ]; then
  echo "bench/run.sh: $PY not found; create the venv first (bash scripts/check)" >&2
  exit 1
fi
if ! "$PY" -c 'import wsguard, websockets, uvloop, picows, psutil, socketio, fastapi, uvicorn, jwt' 2>/dev/null; then
  echo "bench/run.sh: the venv lacks a benchmark dependency; run:" >&2
  echo "  $PY -m pip install -e '.[bench,test]'" >&2
  exit 1
fi
if ! command -v taskset >/dev/null; then
  echo "bench/run.sh: taskset (util-linux) is required to pin server and client" >&2
  exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
  echo "bench/run.sh: needs 2+ CPUs (server and client on separate cores)" >&2
  exit 1
fi

# The idle test holds 5,000 connections: ~5,100 descriptors in the server and in the client.
need_fds=12000
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fds="$(ulimit -n)"
if [ "$fds" != unlimited ] && [ "$fds" -lt "$need_fds" ]; then
  echo "bench/run.sh: ulimit -n is $fds (hard limit $(ulimit -Hn)); the idle test needs" \
       "$need_fds. Raise the hard limit (e.g. ulimit -Hn 65536 as root) and retry." >&2
  exit 1
fi

shown=(${pass[@]+"${pass[@]}"})  # the command as given, for the summary
if [ -n "$against" ]; then
  shown+=(--against "$against")
  rev="$(git rev-parse --verify --quiet "$against^{commit}")" || {
    echo "bench/run.sh: --against: no such revision: $against" >&2
    exit 2
  }
  against_dir="$(mktemp -d /tmp/wsguard-bench-against.XXXXXX)"
  trap 'rm -rf "$against_dir"' EXIT
  git archive "$rev" src | tar -x -C "$against_dir"
  pass+=(--against-src "$against_dir/src" --against-rev "$rev")
fi

if [ "$compiled" = 1 ]; then
  shown+=(--compiled)
  compiled_dir="$(mktemp -d /tmp/wsguard-bench-compiled.XXXXXX)"
  trap 'rm -rf "$compiled_dir" ${against_dir:+"$against_dir"}' EXIT
  echo "== building the compiled package (WSGUARD_COMPILE=1, ~1-2 min) into $compiled_dir"
  bash scripts/build-compiled "$compiled_dir"
  pass+=(--compiled-src "$compiled_dir")
  more_baselines=",wsguard-full,wsguard-full-uvloop"
fi

mkdir -p bench/results
stamp="$(date +%Y%m%d-%H%M%S)"
out="bench/results/bench-$stamp.jsonl"
summary="$(summary_name)"

t0=$(date +%s)
echo "== benchmark: $reps repetitions, ulimit -n $fds, results in $out"
"$PY" bench/run_bench.py --out "$out" --reps "$reps" ${pass[@]+"${pass[@]}"}
t1=$(date +%s)

if [ "$floor" = 1 ]; then
  floor_bin="$(mktemp /tmp/wsguard-bench-floor.XXXXXX)"
  gcc -O2 -o "$floor_bin" bench/floor.c
  echo "== machine floor (bench/floor.c)"
  timeout 150 "$floor_bin" 0 1 | tee "bench/results/floor-$stamp.txt"
  rm -f "$floor_bin"
fi

write_summary "$out" "$summary" \
  "Full command: \`bench/run.sh --reps $reps${shown[*]+ ${shown[*]}}\`; wall time $(( (t1 - t0) / 60 )) min $(( (t1 - t0) % 60 )) s."
