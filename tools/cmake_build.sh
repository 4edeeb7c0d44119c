#!/usr/bin/env bash
# Builds every target with the CMake mirror (against Debian's LibTorch unless
# CMAKE_PREFIX_PATH points elsewhere) into build/cmake and runs its tests
# with ctest, except those labelled "large" (tools/test.sh runs them with
# Bazel; `ctest --test-dir build/cmake -L large` runs them here). Extra
# arguments go to the configure step, e.g.
#   tools/cmake_build.sh -DCMAKE_PREFIX_PATH=/opt/libtorch -DLETHE_WITH_NCCL=ON
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install_deps.sh
jobs=$(nproc)
cmake -S . -B build/cmake -G Ninja "$@"
cmake --build build/cmake -j "$jobs"
ctest --test-dir build/cmake -j "$jobs" --output-on-failure -LE large
