#!/usr/bin/env bash
# Whole-replay throughput and peak memory of the release binary on a generated
# hour of Kong traffic. Usage: scripts/bench-replay.sh [minutes] [clients]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-60}
clients=${2:-300}
cargo build --release -q
bin=target/release/gatewatch
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for fmt in kong envoy generic; do
  "$bin" simulate --minutes "$minutes" --clients "$clients" --format "$fmt" > "$tmp/$fmt.jsonl"
  size=$(stat -c %s "$tmp/$fmt.jsonl")
  /usr/bin/time -f "%U %S %M" -o "$tmp/time" "$bin" replay --input "$tmp/$fmt.jsonl" --alerts /dev/null 2> "$tmp/summary"
  read -r user sys rss < "$tmp/time"
  records=$(grep -o 'replayed [0-9]*' "$tmp/summary" | grep -o '[0-9]*')
  awk -v f="$fmt" -v r="$records" -v u="$user" -v s="$sys" -v m="$rss" -v b="$size" 'BEGIN {
    cpu = u + s; printf "%-8s %8d records %7.1f MB  cpu %5.2fs  %8.0f records/s/core  %6.1f MB/s/core  peak RSS %5.1f MB\n",
      f, r, b / 1e6, cpu, r / cpu, b / 1e6 / cpu, m / 1024 }'
done
