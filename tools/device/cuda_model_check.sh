#!/usr/bin/env bash
# Builds tools/device/cuda_model_check.cc with Lethe's model sources against
# the LibTorch inside the machine's PyTorch wheel and runs it on the GPU (the
# device tool's machines; Lethe's CI has none). From the repository root:
#
#   bash tools/device/cuda_model_check.sh [CARRY]
#
# CARRY (default .device_carry, git-ignored) holds what the GPU machine lacks,
# copied from this machine beforehand (see hf_reference_check.sh):
#   absl/include, absl/lib   Debian's Abseil headers and shared libraries
#                            (each under its SONAME, libabsl_*.so.20220623).
#   nlohmann/include         Debian's nlohmann-json headers
#                            (cp -r /usr/include/nlohmann CARRY/nlohmann/include/).
# Everything is logged to $OUT/log.txt.
set -o pipefail
CARRY=${1:-.device_carry}
OUT=${OUT:-/tmp/cuda_model_check_out}
mkdir -p "$OUT"

build() {
  local torch_dir site abi build=/tmp/cuda_model_build flags includes pids
  torch_dir=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
  site=$(dirname "$torch_dir")
  mkdir -p "$build"
  echo "torch at $torch_dir ($(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)')), CXX11 ABI $abi; $(g++ --version | head -1)"
  includes=(-I. -I"$CARRY/absl/include" -isystem "$torch_dir/include"
            -isystem "$torch_dir/include/torch/csrc/api/include")
  [ -d /usr/include/nlohmann ] || includes+=(-isystem "$CARRY/nlohmann/include")
  for d in /usr/local/cuda/include "$site"/nvidia/*/include; do
    [ -d "$d" ] && includes+=(-isystem "$d")
  done
  flags=(-std=c++17 -O1 -fPIC -Wno-deprecated-declarations
         -D_GLIBCXX_USE_CXX11_ABI="$abi")
  local sources=(libs/model/llama_config.cc libs/model/llama_model.cc
                 libs/model/generation.cc libs/model/safetensors.cc libs/model/hf_checkpoint.cc
                 libs/loss/sequence_loss.cc libs/status/torch_status.cc
                 libs/files/file_io.cc tools/device/cuda_model_check.cc)
  pids=()
  for src in "${sources[@]}"; do
    g++ "${flags[@]}" "${includes[@]}" -c "$src" \
      -o "$build/$(basename "$src" .cc).o" >"$build/$(basename "$src" .cc).err" 2>&1 &
    pids+=($!)
  done
  local failed=0
  for i in "${!pids[@]}"; do
    local stem
    stem=$(basename "${sources[$i]}" .cc)
    if wait "${pids[$i]}"; then
      echo "compiled ${sources[$i]}"
    else
      failed=1
      echo "--- compiling ${sources[$i]} FAILED; first errors:"
      grep -m 25 -E 'error|required from' "$build/$stem.err" | cut -c1-400
    fi
  done
  [ "$failed" = 0 ] || return 1
  # The wheel's libtorch_cpu.so exports copies of libstdc++'s
  # std::filesystem functions (pytorch/pytorch#133437). Linked after it,
  # libstdc++ loses: std::filesystem::remove_all of a non-empty directory
  # then crashed here. So libstdc++.so comes first in DT_NEEDED; the
  # *_torch_first binary keeps the plain order, to show the crash.
  local variant
  for variant in "" _torch_first; do
    local first=(-Wl,--no-as-needed -lstdc++)
    [ -n "$variant" ] && first=()
    g++ -o "$build/cuda_model_check$variant" "$build"/*.o -L"$torch_dir/lib" \
      "${first[@]}" \
      -Wl,--no-as-needed -ltorch_cuda -ltorch -ltorch_cpu -lc10_cuda -lc10 \
      -Wl,--as-needed "$CARRY"/absl/lib/*.so.* \
      -Wl,-rpath,"$torch_dir/lib:$PWD/$CARRY/absl/lib" -rdynamic -lpthread \
      2>&1 | head -40
  done
  echo "libtorch_cpu.so exports $(nm -D --defined-only "$torch_dir/lib/libtorch_cpu.so" \
    | grep -c 'St10filesystem') std::filesystem symbols, e.g.:"
  nm -D --defined-only "$torch_dir/lib/libtorch_cpu.so" | grep remove_all | head -4
  [ -x "$build/cuda_model_check" ] || { echo "LINK FAILED"; return 1; }
}

{
  echo "== machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  start=$(date +%s)
  echo "== build"
  if build; then
    echo "== built in $(( $(date +%s) - start )) s; running"
    LD_LIBRARY_PATH="$PWD/$CARRY/absl/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      timeout 240 /tmp/cuda_model_build/cuda_model_check
    echo "cuda_model_check exit status $?"
    # Again, now that the checkpoint directory exists (the plain link order
    # crashed only then), with both link orders.
    for binary in cuda_model_check cuda_model_check_torch_first; do
      echo "== again: $binary, correctness checks only; libraries in order:"
      readelf -d /tmp/cuda_model_build/$binary | grep -o 'lib\(stdc++\|torch_cpu\)[^]]*'
      LD_LIBRARY_PATH="$PWD/$CARRY/absl/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        LETHE_CHECK_NO_THROUGHPUT=1 timeout 60 \
        /tmp/cuda_model_build/$binary | grep -v ': OK '
      echo "$binary exit status ${PIPESTATUS[0]}"
    done
  else
    echo "BUILD FAILED"
  fi
  echo "== done in $(( $(date +%s) - start )) s"
} 2>&1 | tee "$OUT/log.txt"
