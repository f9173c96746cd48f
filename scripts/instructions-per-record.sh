#!/usr/bin/env bash
# Instructions per record of `gatewatch replay`, counted by valgrind's callgrind: a figure that
# does not depend on how busy the machine is, so CI can guard it. The input is fixed (10
# simulated minutes of Kong traffic, 100 clients, seed 7). Start-up (loading the detectors,
# compiling the scrubber's patterns) is measured on an empty input and taken off.
#
# The records are read on the detectors' thread (`--threads 0`): the count is the work done
# per record, which is what a regression changes. With reading threads, callgrind would also
# count each thread's start-up (one scrubber compiled per reader) and the hand-off between
# threads, which depend on the core count of the machine, not on the code; their speed-up is
# measured by `cargo bench --bench whole_pipeline` instead.
#
#   scripts/instructions-per-record.sh            compare with .ci/instructions-per-record
#   scripts/instructions-per-record.sh --update   write the current figure as the new baseline
#
# Fails when the figure is more than 15 % above the baseline. After a change that makes
# gatewatch faster, run it with --update and commit the baseline, so the gain is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline_file=.ci/instructions-per-record
# shellcheck source=scripts/release-bin.sh
source scripts/release-bin.sh
"$bin" simulate --minutes 10 --clients 100 --seed 7 --format kong > "$tmp/input.jsonl"
: > "$tmp/empty.jsonl"
records=$(wc -l < "$tmp/input.jsonl")

count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" replay --threads 0 --input "$1" --alerts /dev/null 2>&1 \
    | sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p'
}
startup=$(count "$tmp/empty.jsonl")
total=$(count "$tmp/input.jsonl")
[[ -n $startup && -n $total ]] || { echo "callgrind gave no instruction count" >&2; exit 2; }
per_record=$(( (total - startup) / records ))
echo "gatewatch replay: $per_record instructions per record ($records Kong records; start-up $startup instructions, not counted)"

if [[ ${1:-} == --update ]]; then
  echo "$per_record" > "$baseline_file"
  echo "baseline written to $baseline_file"
  exit 0
fi
baseline=$(cat "$baseline_file")
limit=$(( baseline * 115 / 100 ))
ratio=$(awk -v a="$per_record" -v b="$baseline" 'BEGIN { printf "%.3f", a / b }')
echo "baseline $baseline (limit $limit): ratio $ratio"
if (( per_record > limit )); then
  echo "instructions per record grew by more than 15 % over the baseline in $baseline_file" >&2
  exit 1
fi
