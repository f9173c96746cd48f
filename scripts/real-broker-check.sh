#!/usr/bin/env bash
# End-to-end check of `gatewatch run` against a real Kafka-compatible broker.
#
#   scripts/real-broker-check.sh                  # starts tansu on 127.0.0.1:9092 itself
#   BROKERS=kafka:9092 scripts/real-broker-check.sh   # or uses yours (topics are created by name)
#
# tansu: `cargo install tansu --locked --features dynostore` (about 15 minutes on 2 cores).
#
# 1. Simulated Kong traffic (20 minutes, 7 labelled attacks) is produced to a fresh topic,
#    keyed by client id, by `gatewatch simulate --brokers`.
# 2. `gatewatch run` consumes it from the beginning; the alerts on stdout are matched
#    against the labels. It is stopped with SIGTERM once it has read every record.
# 3. It is started again with the same group: the committed offsets hold, the state is
#    rebuilt from the topic (offsets_for_times, alerts muted), and no alert is raised twice.
# 4. Two instances in one group split the partitions and read everything once.
#
# Exits non-zero when a step fails. Needs curl and pgrep (procps); builds the release binary if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

GW=${GW:-target/release/gatewatch}
TANSU=${TANSU:-tansu}
MINUTES=${MINUTES:-20}
PARTITIONS=${PARTITIONS:-4}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

[ -x "$GW" ] || cargo build --release --quiet
if [ -z "${BROKERS:-}" ]; then
  BROKERS=127.0.0.1:9092
  "$TANSU" broker --storage-engine memory://tansu/ --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 >"$work/tansu.log" 2>&1 &
  pids+=($!)
  sleep 2
  "$TANSU" topic create --broker tcp://127.0.0.1:9092 --partitions "$PARTITIONS" "logs-$$" >/dev/null
fi
topic="logs-$$"
export GATEWATCH_FINGERPRINT_KEY="real-broker-check-fingerprint-key"

"$GW" simulate --minutes "$MINUTES" --clients 200 --labels "$work/labels.jsonl" \
  --brokers "$BROKERS" --topic "$topic" 2>"$work/simulate.log"
produced=$(sed -n 's/^gatewatch simulate: \([0-9]*\) .*/\1/p' "$work/simulate.log")
echo "produced $produced records to $topic at $BROKERS ($(wc -l <"$work/labels.jsonl") labelled attacks)"

config() { # $1 = admin port, $2 = group
  cat >"$work/gw-$1.toml" <<EOF
[input]
format = "kong"
[detectors]
dir = "$PWD/detectors"
[kafka]
brokers = "$BROKERS"
topics = ["$topic"]
group_id = "$2"
start_from = "earliest"
commit_interval = "500ms"
[admin]
listen = "127.0.0.1:$1"
EOF
  echo "$work/gw-$1.toml"
}
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
wait_read() { # $1 = target count, $2.. = admin ports
  local want=$1; shift
  for _ in $(seq 1 600); do
    local sum=0
    for port in "$@"; do sum=$((sum + $(metric "$port" gatewatch_kafka_messages_total | cut -d. -f1 || echo 0))); done
    [ "$sum" -ge "$want" ] && return 0
    pgrep -f "$work/gw-" >/dev/null || { tail -5 "$work/run.log" >&2; fail "gatewatch exited"; }
    sleep 1
  done
  fail "only $sum of $want records read"
}
run() { # $1 = admin port, $2 = stdout file, $3 = group
  "$GW" run --config "$(config "$1" "${3:-check-$$}")" >"$2" 2>>"$work/run.log" &
  pids+=($!)
  last_pid=$!
}
stop() { kill -TERM "$1"; wait "$1" || fail "gatewatch did not stop cleanly (see $work/run.log)"; }

# 2. First run.
t0=$(date +%s.%N)
run 19971 "$work/alerts-1.jsonl"; pid=$last_pid
wait_read "$produced" 19971
t1=$(date +%s.%N)
stop "$pid"
found=0
missed=""
while read -r label; do
  detector=$(echo "$label" | sed -n 's/.*"detector":"\([a-z_]*\)".*/\1/p')
  attack=$(echo "$label" | sed -n 's/.*"attack":"\([a-z_]*\)".*/\1/p')
  if grep -q "\"detector\":\"$detector\"" "$work/alerts-1.jsonl"; then found=$((found + 1)); else missed="$missed $attack"; fi
done <"$work/labels.jsonl"
alerts=$(wc -l <"$work/alerts-1.jsonl")
echo "run 1: read $produced records in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s (wall, incl. group join); $alerts alerts; detectors of $found of $(wc -l <"$work/labels.jsonl") labelled attacks fired${missed:+ (not:$missed)}"
[ "$found" -ge 5 ] || fail "too few attacks detected"

# 3. Restart with the same group: nothing new to read, nothing alerted twice.
run 19972 "$work/alerts-2.jsonl"; pid=$last_pid
sleep 15
muted=$(metric 19972 gatewatch_alerts_muted_total)
stop "$pid"
dup=$(sort "$work/alerts-1.jsonl" "$work/alerts-2.jsonl" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' | sort | uniq -d | wc -l)
echo "run 2 (restart): $(wc -l <"$work/alerts-2.jsonl") new alerts, $dup repeated ids, ${muted:-0} alerts muted while rebuilding"
[ "$dup" -eq 0 ] || fail "an alert was raised twice after a restart"

# 4. Two instances in a new group share the partitions and raise the same alerts as one.
run 19973 "$work/alerts-a.jsonl" "check-$$-two"; a=$last_pid
run 19974 "$work/alerts-b.jsonl" "check-$$-two"; b=$last_pid
wait_read "$produced" 19973 19974
pa=$(metric 19973 gatewatch_kafka_assigned_partitions); pb=$(metric 19974 gatewatch_kafka_assigned_partitions)
stop "$a"; stop "$b"
ids() { sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' "$@" | sort -u; }
diff <(ids "$work/alerts-1.jsonl") <(ids "$work/alerts-a.jsonl" "$work/alerts-b.jsonl") >/dev/null \
  || fail "two instances raised a different set of alerts than one"
echo "two instances: partitions split ${pa:-?}+${pb:-?}, the same $(ids "$work/alerts-1.jsonl" | wc -l) alert ids as one instance"

echo "OK"
