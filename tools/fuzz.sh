#!/usr/bin/env bash
# libFuzzer targets for Lethe's input parsers (fuzz/, issue 15).
#
#   tools/fuzz.sh build          compile every target into build/fuzz with
#                                clang++ -fsanitize=fuzzer,address,undefined
#                                (one compile job; LETHE_FUZZ_BUILD_JOBS=N for
#                                more). Needs clang and libFuzzer's runtime
#                                (Debian: clang libclang-rt-14-dev).
#   tools/fuzz.sh smoke          build, then run each target over its seeds
#                                (fuzz/corpus/<name>/) for a few thousand
#                                inputs (-seed=1, at most 6 s each, about a
#                                minute in all); exits 1 if any target
#                                crashes, leaks, trips UBSan or times out.
#   tools/fuzz.sh long N         build, then run each target, one at a time in
#                                one process, until it has executed N inputs
#                                (a crash ends a run; the next run continues
#                                with what is left, at most 5 crashes a
#                                target); prints executions, exec/s and
#                                crashes per target; exits 1 on any crash.
#   tools/fuzz.sh run NAME [ARGS...]
#                                run one target (NAME: safetensors,
#                                llama_config, ...) on its corpora with
#                                libFuzzer's own ARGS, e.g. -max_total_time=600
#   tools/fuzz.sh repro NAME FILE...
#                                run one target on saved inputs (a crash-*
#                                file) once each, to reproduce a finding.
#
# Targets: fuzz/<name>_fuzzer.cc. smoke and long accept target names after
# their arguments to run only those (tools/fuzz.sh long 100000 safetensors).
# New inputs that libFuzzer finds go to build/fuzz/corpus/<name>/ (kept
# between long runs, never into the source tree); findings to
# build/fuzz/findings/<name>/ as crash-*, leak-*, timeout-* or oom-* files.
# To keep a finding as a regression test, add a test with its bytes to the
# parser's *_test.cc and, if it is a useful seed, copy it to
# fuzz/corpus/<name>/.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly BUILD_DIR=build/fuzz
readonly TARGETS=(safetensors llama_config tofu_dataset job_spec_json
                  job_spec_yaml checkpoint_state tokenizer_model)
# Per input: at most 25 s (a slow input is a finding too) and 4 GiB (ASan's
# shadow and LibTorch make the baseline about 1 GiB).
readonly COMMON_FLAGS=(-timeout=25 -rss_limit_mb=4096 -max_len=65536
                       -print_final_stats=1)
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

die() {
  echo "fuzz: $*" >&2
  exit 2
}

find_clang() {
  local candidate
  for candidate in "${CXX_FUZZ:-}" clang++ clang++-14 clang++-15 clang++-16; do
    [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null && {
      echo "$candidate"
      return
    }
  done
  die "no clang++ found; install Debian's clang and libclang-rt-14-dev"
}

build() {
  local cxx
  cxx=$(find_clang)
  # libFuzzer's runtime ships apart from the compiler on Debian.
  if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, long) {
          return 0; }' |
      "$cxx" -x c++ -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
    die "$cxx cannot link -fsanitize=fuzzer; install libclang-rt-14-dev"
  fi
  command -v ninja >/dev/null || die "ninja not found (ninja-build)"
  if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
    cmake -S fuzz -B "$BUILD_DIR" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
      >/dev/null
  fi
  ninja -C "$BUILD_DIR" -j "${LETHE_FUZZ_BUILD_JOBS:-1}" \
    "${selected[@]/%/_fuzzer}"
}

# The targets named on the command line, or all of them.
select_targets() {
  selected=()
  local name
  for name in "$@"; do
    [[ -f "fuzz/${name}_fuzzer.cc" ]] || die "no target '$name'"
    selected+=("$name")
  done
  if ((${#selected[@]} == 0)); then selected=("${TARGETS[@]}"); fi
}

# The flags that point a run of target $1 at its corpora, dictionary and
# findings directory; the first corpus is the writable one.
corpus_flags() {
  local name=$1 work=$2
  mkdir -p "$work" "$BUILD_DIR/findings/$name"
  flags=(-artifact_prefix="$BUILD_DIR/findings/$name/")
  if [[ -f "fuzz/$name.dict" ]]; then flags+=(-dict="fuzz/$name.dict"); fi
  corpora=("$work" "fuzz/corpus/$name")
}

# Runs target $1 with the remaining flags; its log goes to $log. Sets
# `executed` (inputs run, from libFuzzer's final stats) and `status`.
run_target() {
  local name=$1
  shift
  status=0
  "$BUILD_DIR/${name}_fuzzer" "$@" >"$log" 2>&1 || status=$?
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
    tail -n 1)
  executed=${executed:-0}
}

# The finding a failed run saved, and the first lines of its report.
report_finding() {
  local name=$1 finding
  finding=$(sed -n "s/.*Test unit written to \(.*\)$/\1/p" "$log" | tail -n 1)
  echo "fuzz: $name: FAILED (exit $status), input saved to ${finding:-?}"
  grep -m 8 -E 'ERROR: |runtime error:|FUZZ_CHECK|SUMMARY:|==[0-9]+==' \
    "$log" | sed 's/^/    /' || true
  echo "    full log: $log"
}

smoke() {
  local name failed=() started=$SECONDS
  for name in "${selected[@]}"; do
    local work="$BUILD_DIR/smoke/$name"
    rm -rf "$work"
    corpus_flags "$name" "$work"
    log="$BUILD_DIR/logs/smoke-$name.log"
    mkdir -p "$BUILD_DIR/logs"
    local begin=$SECONDS
    run_target "$name" "${COMMON_FLAGS[@]}" "${flags[@]}" -seed=1 \
      -runs=5000 -max_total_time=6 "${corpora[@]}"
    if ((status != 0)); then
      report_finding "$name"
      failed+=("$name")
    else
      echo "fuzz: $name: $executed inputs, no findings" \
        "($((SECONDS - begin)) s)"
    fi
  done
  echo "fuzz smoke: ${#selected[@]} targets, ${#failed[@]} failed" \
    "($((SECONDS - started)) s)${failed[*]:+: ${failed[*]}}"
  ((${#failed[@]} == 0))
}

long() {
  local total=$1 name summary=() any_crash=0
  for name in "${selected[@]}"; do
    corpus_flags "$name" "$BUILD_DIR/corpus/$name"
    mkdir -p "$BUILD_DIR/logs"
    local done_runs=0 crashes=0 part=0 begin=$SECONDS
    while ((done_runs < total && crashes < 5)); do
      part=$((part + 1))
      log="$BUILD_DIR/logs/long-$name-$part.log"
      run_target "$name" "${COMMON_FLAGS[@]}" "${flags[@]}" \
        -runs=$((total - done_runs)) "${corpora[@]}"
      done_runs=$((done_runs + executed))
      if ((status != 0)); then
        crashes=$((crashes + 1))
        report_finding "$name"
        if ((executed == 0)); then break; fi  # Fails at start-up.
      fi
    done
    local seconds=$((SECONDS - begin))
    local rate=$((done_runs / (seconds > 0 ? seconds : 1)))
    summary+=("$(printf '%-18s %12d executions %8d exec/s %3d crashes' \
      "$name" "$done_runs" "$rate" "$crashes")")
    echo "fuzz: ${summary[-1]}"
    ((crashes == 0)) || any_crash=1
  done
  echo "fuzz long: $total executions a target"
  printf '  %s\n' "${summary[@]}"
  ((any_crash == 0))
}

command=${1:-}
shift || true
case "$command" in
  build)
    select_targets "$@"
    build
    ;;
  smoke)
    select_targets "$@"
    build
    smoke
    ;;
  long)
    [[ "${1:-}" =~ ^[0-9]+$ ]] || die "usage: tools/fuzz.sh long N [TARGET...]"
    runs=$1
    shift
    select_targets "$@"
    build
    long "$runs"
    ;;
  run)
    [[ -n "${1:-}" ]] || die "usage: tools/fuzz.sh run NAME [ARGS...]"
    select_targets "$1"
    shift
    build
    corpus_flags "${selected[0]}" "$BUILD_DIR/corpus/${selected[0]}"
    exec "$BUILD_DIR/${selected[0]}_fuzzer" "${COMMON_FLAGS[@]}" \
      "${flags[@]}" "$@" "${corpora[@]}"
    ;;
  repro)
    [[ -n "${1:-}" && -n "${2:-}" ]] ||
      die "usage: tools/fuzz.sh repro NAME FILE..."
    select_targets "$1"
    shift
    build
    exec "$BUILD_DIR/${selected[0]}_fuzzer" "${COMMON_FLAGS[@]}" "$@"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
    ;;
esac
