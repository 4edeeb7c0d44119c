#!/usr/bin/env bash
# Cross-checks on a machine with a GPU, PyTorch and transformers (the device
# tool's machines; Lethe's CI has neither). Run from the repository root:
#
#   bash tools/device/hf_reference_check.sh [CARRY]
#
# CARRY (default .device_carry, git-ignored) holds what this machine made
# beforehand:
#   reverse/      checkpoints written by Lethe plus Lethe's logits, from
#                 LETHE_HF_REVERSE_OUT=$PWD/.device_carry/reverse \
#                   bazel-bin/libs/model/hf_reference_test \
#                   --gtest_filter='HfReferenceWriterTest.*'
#   absl/include, absl/lib
#                 Debian's Abseil headers and shared libraries (the GPU
#                 machine has none), for the NCCL build below; each library
#                 copied under its SONAME (libabsl_*.so.20220623).
#   gloo/include  Debian's Gloo headers (libgloo-dev): the wheel's LibTorch
#                 has Gloo linked in but ships no gloo/*.h, which
#                 ProcessGroupGloo.hpp includes.
#
# 1. tools/device/hf_reference.py: a tiny transformers LlamaForCausalLM and its
#    logits -> $OUT/hf_tiny_llama/ (libs/model/testdata/hf_tiny_llama/), the
#    same for one tiny model of each other family -> $OUT/hf_tiny_<family>/
#    (llama3, qwen2, mistral, phi3, gemma, gemma2: copy them to
#    libs/model/testdata/), and Lethe's checkpoints (every family) loaded by
#    transformers, logits compared.
# 2. In parallel: libs/dist/collective_group.cc compiled with the NCCL path
#    against the wheel's LibTorch, and tools/device/nccl_allreduce_check.cc
#    run (world_size 1 NCCL and Gloo all-reduces).
# Everything is logged to $OUT/log.txt; the NCCL build's log is $OUT/nccl.txt.
set -o pipefail
CARRY=${1:-.device_carry}
OUT=${OUT:-/tmp/hf_reference_out}
mkdir -p "$OUT"

build_and_run_nccl_check() {
  local torch_dir site abi build flags=() includes=() std
  torch_dir=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
  site=$(dirname "$torch_dir")
  build=/tmp/nccl_build
  mkdir -p "$build"
  echo "torch at $torch_dir, CXX11 ABI $abi; $(g++ --version | head -1)"
  includes=(-I. -I"$CARRY/absl/include" -I"$CARRY/gloo/include"
            -isystem "$torch_dir/include" -isystem "$torch_dir/include/torch/csrc/api/include")
  for d in /usr/local/cuda/include "$site"/nvidia/*/include \
           "$site"/nvidia/cu13/include; do
    [ -d "$d" ] && includes+=(-isystem "$d")
  done
  for d in /usr/local/cuda/include "$site"/nvidia/*/include \
           "$site"/nvidia/cu13/include; do
    [ -f "$d/nccl.h" ] && echo "nccl.h: $d/nccl.h"
  done
  flags=(-O0 -fPIC -DLETHE_WITH_NCCL -DUSE_C10D_NCCL -DUSE_DISTRIBUTED
         -DUSE_C10D_GLOO -D_GLIBCXX_USE_CXX11_ABI="$abi")
  local sources=(libs/dist/collective_group.cc libs/status/torch_status.cc
                 tools/device/nccl_allreduce_check.cc)
  for std in c++17 c++20; do
    local pids=() failed=0
    for src in "${sources[@]}"; do
      local stem
      stem=$(basename "$src" .cc)
      g++ -std=$std "${flags[@]}" "${includes[@]}" -c "$src" \
        -o "$build/$stem.o" >"$build/$stem.$std.err" 2>&1 &
      pids+=($!)
    done
    for i in "${!pids[@]}"; do
      if ! wait "${pids[$i]}"; then
        failed=1
        local stem
        stem=$(basename "${sources[$i]}" .cc)
        echo "--- -std=$std: compiling ${sources[$i]} FAILED; first errors:"
        grep -m 25 -E 'error|required from|note: ' "$build/$stem.$std.err" \
          | cut -c1-400
      else
        echo "--- -std=$std: compiled ${sources[$i]}"
      fi
    done
    [ "$failed" = 0 ] && break
  done
  [ "$failed" = 0 ] || { echo "NCCL BUILD FAILED"; return 1; }
  if ! g++ -o "$build/nccl_check" "$build"/*.o -L"$torch_dir/lib" \
      -Wl,--no-as-needed -ltorch_cuda -ltorch -ltorch_cpu -lc10_cuda -lc10 \
      -Wl,--as-needed "$CARRY"/absl/lib/*.so.* \
      -Wl,-rpath,"$torch_dir/lib:$PWD/$CARRY/absl/lib" -lpthread 2>&1 \
      | head -40; then
    :
  fi
  [ -x "$build/nccl_check" ] || { echo "NCCL LINK FAILED"; return 1; }
  # The Abseil libraries find each other through LD_LIBRARY_PATH (a RUNPATH
  # is not inherited by dependencies).
  LD_LIBRARY_PATH="$PWD/$CARRY/absl/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    NCCL_DEBUG=WARN timeout 120 "$build/nccl_check"
  echo "nccl_check exit status $?"
}

{
  echo "== machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  start=$(date +%s)
  build_and_run_nccl_check >"$OUT/nccl.txt" 2>&1 &
  nccl_pid=$!
  echo "== transformers <-> Lethe"
  PYTHONUNBUFFERED=1 python3 tools/device/hf_reference.py \
    --out "$OUT" --reverse "$CARRY/reverse"
  echo "hf_reference.py exit status $?"
  wait "$nccl_pid"
  echo "== NCCL build and check (exit status $?)"
  cat "$OUT/nccl.txt"
  echo "== done in $(( $(date +%s) - start )) s"
} 2>&1 | tee "$OUT/log.txt"
