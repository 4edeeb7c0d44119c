#!/usr/bin/env bash
# The README's demo command. On a fresh Debian 12 machine it installs what
# Lethe needs, builds the binaries with Bazel, starts a local coordinator on
# free ports with two local lethe-worker processes (job store:
# .lethe/demo/coordinator.sqlite) and checks it with the `lethe` CLI,
# prepares the embedded mini-TOFU benchmark (cached in .lethe/benchmark),
# asks the target and the retain model about an author of the forget set,
# then submits a forget request to the coordinator as a job (`lethe submit
# --watch`): NPO+RT on forget10, data-parallel over the two workers (Gloo),
# with a TOFU evaluation against the retain model's log at the end. It asks
# the unlearned model the same question, reports forget quality and model
# utility before and after, and shows the job as the coordinator records it.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install_deps.sh
bazel build --noshow_progress //services/...

demo_dir=.lethe/demo
mkdir -p "$demo_dir"
# A fresh job store and output each run: jobs left by an interrupted run
# would otherwise resume and share the output directory.
rm -f "$demo_dir/coordinator.ready.json" "$demo_dir"/coordinator.sqlite*
unlearned=$PWD/$demo_dir/npo_rt
rm -rf "$unlearned"

bazel-bin/services/coordinator/lethe-coordinator \
  --listen=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --database="$demo_dir/coordinator.sqlite" --local_workers=2 \
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
[[ -n "$grpc_address" ]] || {
  echo "the coordinator did not start:"; cat "$demo_dir/coordinator.log"
  exit 1; }
export LETHE_COORDINATOR=$grpc_address

echo
echo "== Lethe demo =="
echo "coordinator: $grpc_address (log: $demo_dir/coordinator.log)"
echo "workers:     2 local lethe-worker processes (logs: $demo_dir/worker-*.log)"
echo "metrics:     $metrics_url"
lethe=bazel-bin/services/cli/lethe
"$lethe" health

echo
echo "== The embedded mini-TOFU benchmark =="
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
echo "== Forget request: NPO+RT (beta 1) on forget10, 5 epochs, 2 workers x batch 4 =="
# Exits non-zero unless the job SUCCEEDED; the job logs say why.
if ! "$lethe" submit --model=.lethe/benchmark/target \
    --data=.lethe/benchmark/data --forget_split=forget10 \
    --retain_split=retain90 --method=NPO_RT --beta=1 --learning_rate=1e-3 \
    --epochs=5 --world_size=2 --batch_size=4 --evaluate \
    --retain_logs=.lethe/benchmark/retain/TOFU_EVAL.json \
    --output="$unlearned" --watch; then
  "$lethe" list || true
  echo "The job did not succeed; its logs are in $unlearned/logs" >&2
  exit 1
fi
job=$("$lethe" list --format=json | tail -n 1 |
  sed -n 's/^{"name":"\([^"]*\)".*/\1/p')
echo
echo "  unlearned model: $("$lethe" generate --model="$unlearned/model" --prompt="$question" --max_new_tokens=40)"
# summary DIR KEY: the value of KEY in DIR/TOFU_SUMMARY.json, 4 digits, or -.
summary() {
  local value
  value=$(sed -n "s/^ *\"$2\": \([^,]*\),*$/\1/p" "$1/TOFU_SUMMARY.json")
  if [[ -n "$value" ]]; then printf '%.4g' "$value"; else printf -- '-'; fi
}
echo
printf '%-10s %-16s %-14s %s\n' model "forget quality" "model utility" "forget Q_A_Prob"
for model in target:.lethe/benchmark/target "unlearned:$unlearned/eval" \
    retain:.lethe/benchmark/retain; do
  name=${model%%:*}
  dir=${model#*:}
  printf '%-10s %-16s %-14s %s\n' "$name" "$(summary "$dir" forget_quality)" \
    "$(summary "$dir" model_utility)" "$(summary "$dir" forget_Q_A_Prob)"
done
echo "(forget quality: KS p-value against the retain model; the retain model"
echo " is the reference, so its own row has none)"

echo
echo "== The job, as the coordinator records it (lethe get $job) =="
"$lethe" get "$job"
echo
echo "unlearned model (Hugging Face layout): $unlearned/model"
echo "evaluation: $unlearned/eval/TOFU_EVAL.json, TOFU_SUMMARY.json"
echo "checkpoints: $unlearned/checkpoints; rank logs: $unlearned/logs"
echo "metrics: $metrics_url; more: lethe logs $job, lethe list"
echo "try: curl -s $metrics_url | grep -E '^lethe_(jobs|jobs_finished_total)'"
echo "(deploy/prometheus and deploy/grafana hold a scrape config, alert rules"
echo " and a dashboard for these series)"
echo "Stopping the coordinator and its workers."
