#!/usr/bin/env bash
# The README's demo command. On a fresh Debian 12 machine it installs what
# Lethe needs, builds the binaries with Bazel, starts a local coordinator on
# free ports, checks it with the `lethe` CLI, and stops it again.
#
# What it does not do yet (tracked in the issues): prepare the embedded
# mini-TOFU benchmark, start workers, submit and watch a forget request, and
# report forget quality and model utility.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install_deps.sh
bazel build --noshow_progress //services/...

demo_dir=.lethe/demo
mkdir -p "$demo_dir"
rm -f "$demo_dir/coordinator.ready.json"

bazel-bin/services/coordinator/lethe-coordinator \
  --listen=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --ready_file="$demo_dir/coordinator.ready.json" \
  >"$demo_dir/coordinator.log" 2>&1 &
coordinator_pid=$!
trap 'kill "$coordinator_pid" 2>/dev/null; wait "$coordinator_pid" 2>/dev/null' EXIT

for _ in $(seq 300); do
  [[ -s "$demo_dir/coordinator.ready.json" ]] && break
  kill -0 "$coordinator_pid" 2>/dev/null || {
    cat "$demo_dir/coordinator.log"; exit 1; }
  sleep 0.1
done
grpc_address=$(sed -n 's/.*"grpc_address":"\([^"]*\)".*/\1/p' \
  "$demo_dir/coordinator.ready.json")
metrics_url=$(sed -n 's/.*"metrics_url":"\([^"]*\)".*/\1/p' \
  "$demo_dir/coordinator.ready.json")

echo
echo "== Lethe demo =="
echo "coordinator: $grpc_address (log: $demo_dir/coordinator.log)"
echo "metrics:     $metrics_url"
bazel-bin/services/cli/lethe health --coordinator="$grpc_address"
echo
echo "Not in this build yet: the embedded mini-TOFU benchmark, workers,"
echo "forget requests (NPO, OFMU, ...) and the forget-quality report."
echo "Stopping the coordinator."
