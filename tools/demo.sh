#!/usr/bin/env bash
# The README's demo command. On a fresh Debian 12 machine it installs what
# Lethe needs, builds the binaries with Bazel, starts a local coordinator on
# free ports and checks it with the `lethe` CLI, prepares the embedded
# mini-TOFU benchmark (cached in .lethe/benchmark), and asks the target and
# the retain model about an author of the forget set.
#
# What it does not do yet (tracked in the issues): start workers, submit and
# watch a forget request, and report forget quality and model utility.
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
echo "== The embedded mini-TOFU benchmark =="
lethe=bazel-bin/services/cli/lethe
"$lethe" prepare-benchmark --cache_dir=.lethe/benchmark --threads="$(nproc)"
forget=.lethe/benchmark/data/forget10.json
question=$(sed -n '1s/^{"question":"\([^"]*\)".*/\1/p' "$forget")
answer=$(sed -n '1s/.*"answer":"\([^"]*\)".*/\1/p' "$forget")
echo
echo "A question about an author in the forget set:"
echo "  Q: $question"
echo "  true answer:  $answer"
echo "  target model: $("$lethe" generate --model=.lethe/benchmark/target --prompt="$question" --max_new_tokens=40)"
echo "  retain model: $("$lethe" generate --model=.lethe/benchmark/retain --prompt="$question" --max_new_tokens=40)"
echo
echo "Not in this build yet: workers, forget requests (NPO, OFMU, ...) and"
echo "the forget-quality report. Stopping the coordinator."
