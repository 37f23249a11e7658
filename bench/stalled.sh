#!/usr/bin/env bash
# Bounded memory with a stalled subscriber: one client subscribes to everything at QoS 1 and
# never reads, while `fulmar bench fanin -P 16 -q 1` publishes at full speed for $DURATION s.
# Reports each broker's peak RSS (VmHWM) and what the live subscriber still received. Uses the
# broker settings of bench/compare.sh (sourced for broker_config / broker_cmd).
#
#   BROKERS="fulmar mosquitto rumqttd nats flashmq" DURATION=10 FLASHMQ=... bench/stalled.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
export SCENARIOS=none ROUNDS=0 PLACEMENTS=none
OUT=${OUT:-bench/results/stalled-$(date +%Y%m%d-%H%M%S)}
export OUT
# shellcheck source=compare.sh
COMPARE_LIBRARY_ONLY=1 source bench/compare.sh
echo "| broker | peak RSS (VmHWM) | RSS at end | delivered msgs/s to the live subscriber | lost |"
echo "|---|---|---|---|---|"
for b in $BROKERS; do
  PORT=$((PORT + 2)); dir=$(mktemp -d); broker_config "$b" pinned "$dir"
  start_pinned "$b" "$dir"; pid=$BROKER_PID
  wait_port "$PORT" || { echo "| $b | did not start | | | |"; kill "$pid" 2>/dev/null; continue; }
  # The stalled subscriber: CONNECT, SUBSCRIBE bench/# at QoS 1, a 4 KiB receive buffer, never read.
  python3 - "$PORT" >"$dir/stalled.log" 2>&1 <<'PY' &
import socket, struct, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
cid = b"stalled"; body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(cid)) + cid
s.sendall(bytes([0x10, len(body)]) + body)
topic = b"bench/#"; sub = struct.pack("!H", 1) + struct.pack("!H", len(topic)) + topic + b"\x01"
s.sendall(bytes([0x82, len(sub)]) + sub)
time.sleep(3600)
PY
  stalled=$!
  sleep 1
  json=$OUT/stalled.$b.json
  taskset -c 1 "$BENCH" bench fanin -P 16 -q 1 --port "$PORT" --broker-pid "$pid" --json --quiet \
    --duration "$DURATION" --warmup 1 >"$json" 2>"$json.err" || true
  hwm=$(awk '/VmHWM/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo 0)
  rss=$(awk '/VmRSS/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo 0)
  kill "$stalled" "$pid" 2>/dev/null; wait "$pid" "$stalled" 2>/dev/null || true
  python3 - "$json" "$b" "$hwm" "$rss" <<'PY'
import json, sys
_, path, b, hwm, rss = sys.argv
try:
    r = json.load(open(path)); rate, lost = f"{r['msgs_per_sec']:,.0f}", r["lost"]
except Exception:
    rate, lost = "(no result)", "-"
print(f"| {b} | {int(hwm)/1024:,.1f} MB | {int(rss)/1024:,.1f} MB | {rate} | {lost} |")
PY
  rm -rf "$dir"
done
