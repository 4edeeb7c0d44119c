#!/usr/bin/env bash
# Builds tools/device/cuda_unlearning_check.cc with Lethe's model, data,
# unlearning and collective sources against the LibTorch inside the
# machine's PyTorch wheel (NCCL on) and runs it on the GPU. From the
# repository root:
#
#   bash tools/device/cuda_unlearning_check.sh [CARRY]
#
# CARRY (default .device_carry, git-ignored) holds what the GPU machine may
# lack, copied from this machine beforehand:
#   absl/include, absl/lib   Debian's Abseil headers and shared libraries
#   nlohmann/include         Debian's nlohmann-json headers
#   gloo/include             Debian's Gloo headers (libgloo-dev)
#   zlib/include, zlib/lib   zlib.h, zconf.h and libz.so.1
#   glog/include, glog/lib   Debian's glog and gflags headers and
#                            libglog.so.1, libgflags.so.2.2 (libs/logging;
#                            not yet run on a GPU since logging was added)
# (see cuda_model_check.sh and hf_reference_check.sh). Everything is logged
# to $OUT/log.txt.
set -o pipefail
CARRY=${1:-.device_carry}
OUT=${OUT:-/tmp/cuda_unlearning_check_out}
BUILD=/tmp/cuda_unlearning_build
mkdir -p "$OUT" "$BUILD"

build() {
  local torch_dir site abi flags includes pids failed=0
  torch_dir=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
  site=$(dirname "$torch_dir")
  echo "torch at $torch_dir ($(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)')), CXX11 ABI $abi; $(g++ --version | head -1)"
  includes=(-I. -I"$CARRY/absl/include" -I"$CARRY/gloo/include"
            -isystem "$torch_dir/include"
            -isystem "$torch_dir/include/torch/csrc/api/include")
  [ -d /usr/include/nlohmann ] || includes+=(-isystem "$CARRY/nlohmann/include")
  [ -f /usr/include/zlib.h ] || includes+=(-isystem "$CARRY/zlib/include")
  [ -d /usr/include/glog ] || includes+=(-isystem "$CARRY/glog/include")
  for d in /usr/local/cuda/include "$site"/nvidia/*/include \
           "$site"/nvidia/cu13/include; do
    [ -d "$d" ] && includes+=(-isystem "$d")
  done
  flags=(-std=c++17 -O1 -fPIC -Wno-deprecated-declarations
         -DLETHE_WITH_NCCL -DUSE_C10D_NCCL -DUSE_DISTRIBUTED -DUSE_C10D_GLOO
         -D_GLIBCXX_USE_CXX11_ABI="$abi")
  local sources=(libs/model/llama_config.cc libs/model/llama_model.cc
                 libs/model/safetensors.cc libs/model/hf_checkpoint.cc
                 libs/data/qa_batch.cc libs/data/sharding.cc
                 libs/loss/sequence_loss.cc libs/unlearn/objective.cc
                 libs/unlearn/objective_params.cc
                 libs/unlearn/ofmu.cc libs/unlearn/reference_cache.cc
                 libs/unlearn/checkpoint.cc libs/unlearn/trainer.cc
                 libs/unlearn/unlearning_run.cc libs/dist/collective_group.cc
                 libs/status/torch_status.cc libs/files/file_io.cc
                 libs/logging/logging.cc
                 tools/device/cuda_unlearning_check.cc)
  pids=()
  for src in "${sources[@]}"; do
    g++ "${flags[@]}" "${includes[@]}" -c "$src" \
      -o "$BUILD/$(basename "$src" .cc).o" >"$BUILD/$(basename "$src" .cc).err" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    local stem
    stem=$(basename "${sources[$i]}" .cc)
    if ! wait "${pids[$i]}"; then
      failed=1
      echo "--- compiling ${sources[$i]} FAILED; first errors:"
      grep -m 25 -E 'error|required from' "$BUILD/$stem.err" | cut -c1-400
    fi
  done
  [ "$failed" = 0 ] || return 1
  # libstdc++ ahead of the wheel's libtorch_cpu (see cuda_model_check.sh).
  g++ -o "$BUILD/cuda_unlearning_check" "$BUILD"/*.o -L"$torch_dir/lib" \
    -Wl,--no-as-needed -lstdc++ \
    -ltorch_cuda -ltorch -ltorch_cpu -lc10_cuda -lc10 \
    -Wl,--as-needed "$CARRY"/absl/lib/*.so.* "$CARRY/zlib/lib/libz.so.1" \
    "$CARRY"/glog/lib/*.so.* \
    -Wl,-rpath,"$torch_dir/lib:$PWD/$CARRY/absl/lib:$PWD/$CARRY/zlib/lib:$PWD/$CARRY/glog/lib" \
    -lpthread 2>&1 | head -40
  [ -x "$BUILD/cuda_unlearning_check" ] || { echo "LINK FAILED"; return 1; }
}

{
  echo "== machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  start=$(date +%s)
  echo "== build"
  if build; then
    echo "== built in $(( $(date +%s) - start )) s; running"
    LD_LIBRARY_PATH="$PWD/$CARRY/absl/lib:$PWD/$CARRY/zlib/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      NCCL_DEBUG=WARN timeout 300 "$BUILD/cuda_unlearning_check"
    echo "cuda_unlearning_check exit status $?"
  else
    echo "BUILD FAILED"
  fi
  echo "== done in $(( $(date +%s) - start )) s"
} 2>&1 | tee "$OUT/log.txt"
