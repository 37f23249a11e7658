#!/usr/bin/env bash
# Which TCP pacing timers fire on the broker's core, pinned, during one scenario: with a pacing
# congestion control (BBR) over a qdisc that does not pace (noqueue on lo), each socket paces
# itself with an hrtimer (`tcp_pace_kick`) that stays on the core that armed it. On loopback a
# publisher whose receive window the broker reopens is transmitted from the broker's core, so
# its timers fire there. Counts `timer:hrtimer_expire_entry` on core 0 with `perf` and groups
# the pacing timers by timer (one per socket). Needs root or perf_event_paranoid <= 0.
#
#   BROKERS="fulmar flashmq" SCENARIO=fanin-q0 SIZE=4096 FLASHMQ=... bench/pacing-timers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-4}
SCENARIO=${SCENARIO:-fanin-q0}
export SIZE=${SIZE:-4096}
export SCENARIOS=none ROUNDS=0 PLACEMENTS=none
OUT=${OUT:-bench/results/pacing-$(date +%Y%m%d-%H%M%S)}
export OUT
# shellcheck source=compare.sh
COMPARE_LIBRARY_ONLY=1 source bench/compare.sh
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
echo "congestion control: $(sysctl -n net.ipv4.tcp_congestion_control), qdisc on lo: $(tc qdisc show dev lo 2>/dev/null | awk '{print $2; exit}')"
echo "| broker | delivered msgs/s | pacing timer expiries/s on core 0 | per 1,000 messages | timers (sockets) | busiest timer's share |"
echo "|---|---|---|---|---|---|"
for b in $BROKERS; do
  PORT=$((PORT + 2)); dir=$(mktemp -d); broker_config "$b" pinned "$dir"
  start_pinned "$b" "$dir"; pid=$BROKER_PID
  wait_port "$PORT" || { echo "| $b | did not start | | | | |"; kill "$pid" 2>/dev/null; continue; }
  window=$((DURATION - 1))
  (sleep 1; perf record -q -e timer:hrtimer_expire_entry -C 0 -o "$dir/timers.data" -- sleep "$window" >/dev/null 2>&1) &
  recorder=$!
  json=$OUT/pacing.$b.json
  # shellcheck disable=SC2046
  taskset -c 1 "$BENCH" bench $(scenario_args "$SCENARIO") -s "$SIZE" --port "$PORT" --json --quiet \
    --duration "$DURATION" --warmup 0 >"$json" 2>"$json.err" || true
  wait "$recorder" || true
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  perf script -i "$dir/timers.data" 2>/dev/null | grep -o 'hrtimer=[0-9a-fx]* function=tcp_pace_kick' \
    | sort | uniq -c | sort -rn >"$OUT/pacing.$b.timers" || true
  python3 - "$json" "$OUT/pacing.$b.timers" "$window" "$b" <<'PY'
import json, sys
report, timers, window, broker = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
rate = json.load(open(report))["msgs_per_sec"]
counts = [int(line.split()[0]) for line in open(timers) if line.strip()]
fires = sum(counts) / window
top = max(counts) / sum(counts) if counts else 0
print(f"| {broker} | {rate:,.0f} | {fires:,.0f} | {1000 * fires / rate:.1f} | {len(counts)} | {top:.0%} |")
PY
  rm -rf "$dir"
done
