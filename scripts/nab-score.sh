#!/usr/bin/env bash
# latency_anomaly scored with the Numenta Anomaly Benchmark's own scoring (standard profile)
# on every realKnownCause and realAWSCloudwatch series of a NAB checkout, each row turned into
# N = 12 and N = 100 requests on one route (see tests/nab_score.rs for the method).
#
#   scripts/nab-score.sh [NAB_DIR]        default: ../shared/data/nab (a NAB checkout's layout:
#                                         data/<group>/*.csv, labels/combined_windows.json)
#   GATEWATCH_NAB_DETECTOR=FILE scripts/nab-score.sh   score another latency_anomaly file
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-../shared/data/nab}
GATEWATCH_NAB_DIR=$(cd "$dir" && pwd) exec cargo test --release --test nab_score -- \
  --ignored --nocapture --test-threads 1 latency_anomaly_nab_score_on_a_nab_checkout
