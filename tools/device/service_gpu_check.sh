#!/usr/bin/env bash
# Builds lethe-worker, lethe-coordinator and the lethe CLI with g++ against
# the machine's LibTorch and the Debian libraries that
# tools/device/service_carry.sh gathered, then runs the service as a user
# would: a coordinator, a CUDA worker and a CPU worker as separate
# processes, and forget requests submitted with the CLI on each device.
# From the repository root:
#
#   bash tools/device/service_gpu_check.sh [CARRY]
#
# CARRY (default .device_carry) must hold the service/ folder that
# service_carry.sh writes. With a CUDA PyTorch on python3's path (the device
# tool's GPU machines) it builds with NCCL and runs the CUDA job (NCCL,
# world size 1) and the same job on the CPU worker (Gloo); elsewhere it
# builds against Debian's LibTorch and runs the CPU job only, which is how
# the script itself is tested here. Checks, each printed as CHECK name:
# OK|FAIL:
#   - every job SUCCEEDED and wrote its model and TOFU_SUMMARY.json;
#   - `lethe eval` of a job's model on the CPU reproduces the job's own
#     evaluation (same weights, a different process and device);
#   - the CUDA job's summary is close to the CPU job's (same data order,
#     fp32 on both; they differ by rounding only);
#   - a longer job whose worker is killed (SIGKILL, its rank too) once the
#     first checkpoint exists resumes from it on a new worker of the same
#     device and succeeds with one restart (on the GPU when there is one).
# Everything is logged to $OUT/log.txt. SERVICE_CHECK_REUSE_BUILD=1 skips
# the build and runs the binaries of the last one again.
set -o pipefail
cd "$(dirname "$0")/../.."
CARRY=$PWD/${1:-.device_carry}/service
OUT=${OUT:-/tmp/service_gpu_check_out}
BUILD=/tmp/service_gpu_build
RUN=/tmp/service_gpu_run
threads=$(( $(nproc) < 8 ? $(nproc) : 8 ))
mkdir -p "$OUT"
failures=0

check() {  # check NAME OK(0|1) DETAIL
  if [[ "$2" == 1 ]]; then echo "CHECK $1: OK  $3"
  else echo "CHECK $1: FAIL  $3"; failures=$((failures + 1)); fi
}

# Sets cuda (0|1), compile_flags and torch_link for the LibTorch found.
find_torch() {
  local torch_dir abi site d
  if python3 -c 'import torch, sys; sys.exit(not torch.version.cuda)' 2>/dev/null; then
    cuda=1
    torch_dir=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
    abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
    site=$(dirname "$torch_dir")
    echo "LibTorch: $torch_dir ($(python3 -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)'))"
    compile_flags=(-D_GLIBCXX_USE_CXX11_ABI="$abi" -DLETHE_WITH_NCCL
                   -DUSE_C10D_NCCL -isystem "$torch_dir/include"
                   -isystem "$torch_dir/include/torch/csrc/api/include")
    for d in /usr/local/cuda/include "$site"/nvidia/*/include \
             "$site"/nvidia/cu13/include; do
      [[ -d "$d" ]] && compile_flags+=(-isystem "$d")
    done
    # libstdc++ ahead of the wheel's libtorch_cpu, which exports its own
    # std::filesystem (see tools/device/cuda_model_check.sh).
    torch_link=(-L"$torch_dir/lib" -Wl,--no-as-needed -lstdc++ -ltorch_cuda
                -ltorch -ltorch_cpu -lc10_cuda -lc10 -Wl,--as-needed
                -Wl,-rpath,"$torch_dir/lib")
  else
    cuda=0
    echo "LibTorch: Debian's (CPU only; the CUDA job is skipped)"
    compile_flags=(-isystem /usr/include/torch/csrc/api/include)
    torch_link=(-ltorch -ltorch_cpu -lc10 -lgloo)
  fi
}

# object_of SRC: the object file build() compiles SRC to.
object_of() {
  echo "$BUILD/obj/$(echo "${1#"$CARRY"/}" | tr / _ | sed 's/\.cc$/.o/')"
}

build() {
  local src obj failed=0 jobs=0 start
  rm -rf "$BUILD" && mkdir -p "$BUILD/obj"
  local flags=(-std=c++17 -O1 -g0 -pthread -Wno-deprecated-declarations
               -DUSE_DISTRIBUTED -DUSE_C10D_GLOO -I. -I"$CARRY/generated"
               -I"$CARRY/include" "${compile_flags[@]}")
  local sources
  mapfile -t sources < <(cat "$CARRY/sources.txt"
                         cd "$CARRY/generated" && find . -name '*.pb.cc' |
                           sed "s|^\./|$CARRY/generated/|")
  sources+=(services/worker/worker_main.cc
            services/coordinator/coordinator_main.cc services/cli/lethe_main.cc)
  start=$(date +%s)
  for src in "${sources[@]}"; do
    obj=$(object_of "$src")
    (g++ "${flags[@]}" -c "$src" -o "$obj" >"$obj.err" 2>&1 && touch "$obj.ok") &
    jobs=$((jobs + 1))
    if (( jobs >= $(nproc) )); then wait -n; jobs=$((jobs - 1)); fi
  done
  wait
  for src in "${sources[@]}"; do
    obj=$(object_of "$src")
    [[ -f "$obj.ok" ]] && continue
    failed=1
    echo "--- compiling $src FAILED; first errors:"
    grep -m 20 -E 'error|required from' "$obj.err" | cut -c1-400
  done
  [[ "$failed" == 0 ]] || return 1
  echo "compiled ${#sources[@]} files in $(( $(date +%s) - start )) s"
  ar rcs "$BUILD/liblethe.a" $(ls "$BUILD"/obj/*.o | grep -v '_main\.o$')
  local main binary
  for main in worker_main:lethe-worker coordinator_main:lethe-coordinator \
              lethe_main:lethe; do
    binary=${main#*:}
    g++ -pthread -o "$BUILD/$binary" "$BUILD"/obj/*_"${main%%:*}.o" \
      "$BUILD/liblethe.a" "${torch_link[@]}" "$CARRY"/lib/*.so* \
      -Wl,-rpath,"$CARRY/lib" -Wl,-rpath-link,"$CARRY/lib" 2>&1 | head -30
    [[ -x "$BUILD/$binary" ]] || { echo "linking $binary FAILED"; return 1; }
  done
  echo "built $(ls "$BUILD"/lethe* | xargs -n1 basename | tr '\n' ' ')"
}

# summary_value FILE KEY: KEY's number in a TOFU_SUMMARY.json.
summary_value() {
  sed -n "s/^ *\"$2\": \([^,]*\),*$/\1/p" "$1"
}

# close A B TOLERANCE: 1 when |A - B| <= TOLERANCE.
close() {
  awk -v a="$1" -v b="$2" -v t="$3" \
    'BEGIN { d = a - b; if (d < 0) d = -d; print (a != "" && b != "" && d <= t) ? 1 : 0 }'
}

compare_summaries() {  # compare_summaries NAME A B TOLERANCE
  local key a b all=1 detail=""
  for key in forget_Q_A_Prob forget_Q_A_ROUGE forget_quality model_utility \
             extraction_strength mia_loss; do
    a=$(summary_value "$2" "$key")
    b=$(summary_value "$3" "$key")
    detail+=" $key $a vs $b;"
    [[ $(close "$a" "$b" "$4") == 1 ]] || all=0
  done
  check "$1" "$all" "(tolerance $4)$detail"
}

# write_spec NAME DEVICE BACKEND EPOCHS [EVALUATE]: $RUN/NAME.yaml, an
# NPO_RT job on one worker that checkpoints every 5 steps.
write_spec() {
  cat >"$RUN/$1.yaml" <<EOF
model_dir: $CARRY/benchmark/target
data_dir: $CARRY/benchmark/data
forget_split: forget10
method: NPO_RT
optimizer: {learning_rate: 1e-3, weight_decay: 0.01, warmup_epochs: 1,
            max_grad_norm: 1, seed: 1}
num_epochs: $4
per_device_batch_size: 8
world_size: 1
device: $2
backend: $3
checkpoint: {every_steps: 5, keep_last: 2}
output_dir: $RUN/$1
EOF
  [[ -z "${5:-}" ]] ||
    echo "evaluation: {retain_logs_path: $CARRY/benchmark/retain/TOFU_EVAL.json}" >>"$RUN/$1.yaml"
}

# newest_job: the name of the job submitted last.
newest_job() {
  "$BUILD/lethe" list --format=json | tail -n 1 |
    sed -n 's/^{"name":"\([^"]*\)".*/\1/p'
}

# submit_job NAME DEVICE BACKEND: a 2-epoch job with an evaluation, run to
# the end.
submit_job() {
  local name=$1 start status
  write_spec "$name" "$2" "$3" 2 evaluate
  start=$(date +%s.%N)
  "$BUILD/lethe" submit "$RUN/$name.yaml" --watch
  status=$?
  echo "$name job: exit status $status after $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
  "$BUILD/lethe" get "$(newest_job)"
  check "$name job succeeded" "$([[ $status == 0 && -f $RUN/$name/model/model.safetensors && -f $RUN/$name/eval/TOFU_SUMMARY.json ]] && echo 1 || echo 0)" \
    "output $RUN/$name"
  [[ $status == 0 ]] || tail -n 40 "$RUN/$name"/logs/* 2>/dev/null
}

# job_state JOB: the job's state (QUEUED, RUNNING, SUCCEEDED, ...).
job_state() {
  "$BUILD/lethe" get "$1" | awk '$1 == "state" {print $2}'
}

# start_worker DEVICE THREADS: a worker for DEVICE (cpu, cuda:0) in the
# background; its pid goes to worker_pid[DEVICE].
declare -A worker_pid=()
start_worker() {
  "$BUILD/lethe-worker" --coordinator="$LETHE_COORDINATOR" --device="$1" \
    --threads="$2" >>"$RUN/worker-${1%%:*}.log" 2>&1 &
  worker_pid[$1]=$!
}

# interrupted_job NAME DEVICE BACKEND WORKER_DEVICE THREADS EPOCHS: a job
# whose worker (and the rank it runs) is killed with SIGKILL once the first
# checkpoint exists; a new worker is started, and the job must resume from
# the checkpoint on it and succeed with one restart. EPOCHS must leave the
# job running past its first checkpoint (5 steps) while the kill is made.
interrupted_job() {
  local name=$1 job restarts state resumed
  write_spec "$name" "$2" "$3" "$6"
  "$BUILD/lethe" submit "$RUN/$name.yaml" >/dev/null
  job=$(newest_job)
  for _ in $(seq 3000); do
    compgen -G "$RUN/$name/checkpoints/*" >/dev/null && break
    sleep 0.02
  done
  state=$(job_state "$job")
  pkill -KILL -P "${worker_pid[$4]}"
  kill -KILL "${worker_pid[$4]}"
  echo "$name: killed the $4 worker and its rank (job $state; checkpoints: $(ls "$RUN/$name/checkpoints" | tr '\n' ' '))"
  start_worker "$4" "$5"
  "$BUILD/lethe" watch "$job" >/dev/null
  "$BUILD/lethe" get "$job"
  restarts=$("$BUILD/lethe" get "$job" --format=json | sed -n 's/.*"restart_count":\([0-9]*\).*/\1/p')
  state=$(job_state "$job")
  resumed=$("$BUILD/lethe" logs "$job" --follow=false | grep -o 'resumed from step [0-9]*')
  check "$name: resumed after a killed worker" \
    "$([[ $state == SUCCEEDED && $restarts == 1 && -n $resumed ]] && echo 1 || echo 0)" \
    "state $state, restart count ${restarts:-0}, ${resumed:-not resumed}"
}

# eval_on_cpu NAME: `lethe eval` of the job's model, compared with the job's.
eval_on_cpu() {
  "$BUILD/lethe" eval --model="$RUN/$1/model" --data="$CARRY/benchmark/data" \
    --forget_split=forget10 --retain_logs="$CARRY/benchmark/retain/TOFU_EVAL.json" \
    --threads="$threads" --output="$RUN/$1_cpu_eval" >"$RUN/$1_cpu_eval.log" 2>&1 ||
    tail -n 20 "$RUN/$1_cpu_eval.log"
  compare_summaries "$1 model: CPU eval = job's eval" \
    "$RUN/$1/eval/TOFU_SUMMARY.json" "$RUN/$1_cpu_eval/TOFU_SUMMARY.json" 2e-3
}

run_service() {
  rm -rf "$RUN" && mkdir -p "$RUN"
  "$BUILD/lethe-coordinator" --listen=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
    --database="$RUN/coordinator.sqlite" --ready_file="$RUN/ready.json" \
    >"$RUN/coordinator.log" 2>&1 &
  local pids=($!)
  for _ in $(seq 100); do [[ -s "$RUN/ready.json" ]] && break; sleep 0.1; done
  export LETHE_COORDINATOR
  LETHE_COORDINATOR=$(sed -n 's/.*"grpc_address":"\([^"]*\)".*/\1/p' "$RUN/ready.json")
  [[ -n "$LETHE_COORDINATOR" ]] || { echo "no coordinator:"; cat "$RUN/coordinator.log"; return 1; }
  start_worker cpu "$threads"
  [[ $cuda == 0 ]] || start_worker cuda:0 4
  sleep 2
  "$BUILD/lethe" health
  if [[ $cuda == 1 ]]; then
    submit_job cuda CUDA NCCL
    eval_on_cpu cuda
  fi
  submit_job cpu CPU GLOO
  eval_on_cpu cpu
  if [[ $cuda == 1 ]]; then
    compare_summaries "CUDA job ~ CPU job" "$RUN/cuda/eval/TOFU_SUMMARY.json" \
      "$RUN/cpu/eval/TOFU_SUMMARY.json" 0.05
    interrupted_job cuda_resume CUDA NCCL cuda:0 4 20
  else
    interrupted_job cpu_resume CPU GLOO cpu "$threads" 2
  fi
  kill "${pids[@]}" "${worker_pid[@]}" 2>/dev/null
  wait 2>/dev/null
  echo "--- worker logs (tails)"
  tail -n 5 "$RUN"/worker-*.log
}

{
  echo "== machine: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo no GPU), $(nproc) cores, $(g++ --version | head -1)"
  start=$(date +%s)
  [[ -f "$CARRY/sources.txt" ]] || { echo "no $CARRY: run tools/device/service_carry.sh"; exit 1; }
  find_torch
  echo "== build"
  if [[ "${SERVICE_CHECK_REUSE_BUILD:-0}" == 1 && -x "$BUILD/lethe" ]] || build; then
    echo "== built in $(( $(date +%s) - start )) s; running the service"
    export LD_LIBRARY_PATH=$CARRY/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    run_service
  else
    check build 0 "see the errors above"
  fi
  echo "== done in $(( $(date +%s) - start )) s, $failures failed checks"
  exit $(( failures > 0 ))
} 2>&1 | tee "$OUT/log.txt"
