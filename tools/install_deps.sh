#!/usr/bin/env bash
# Installs every Debian 12 package Lethe needs to build, test and run. This is
# the only list of packages in the project: the README, CI and the Dockerfile
# all call this script. Idempotent: packages already present are skipped, and
# apt is not touched when nothing is missing. Uses sudo when not root.
set -euo pipefail

packages=(
  # Toolchain and builds: Bazel (primary, offline) and the CMake mirror.
  g++ make cmake ninja-build pkg-config git
  bazel-bootstrap bazel-rules-java bazel-platforms
  # Fuzzing (tools/fuzz.sh): clang and libFuzzer's runtime.
  clang libclang-rt-14-dev
  clang-format
  # LibTorch (CPU, c10d with Gloo) and the BLAS it must use: without
  # OpenBLAS, Debian's LibTorch falls back to reference BLAS, ~50x slower.
  # libblas-dev: the CBLAS header and link library of packed attention
  # (libs/model/packed_attention.h), OpenBLAS at run time.
  libtorch-dev libgloo-dev libopenblas0-openmp libblas-dev
  # RPC and serialisation.
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev
  libabsl-dev nlohmann-json3-dev
  # Metrics, logs, tokenizer, job store, YAML job specs, tests.
  prometheus-cpp-dev libgoogle-glog-dev libsentencepiece-dev libsqlite3-dev
  libyaml-dev
  # PCRE2: the regular expressions of tokenizer.json files.
  libpcre2-dev
  # libcrypto (SHA-256 of the files that identify a run, API tokens) and
  # the openssl command (throwaway TLS certificates in the security tests).
  libssl-dev openssl
  googletest libgtest-dev libgmock-dev
  # The Prometheus server and promtool, for end-to-end tests and the demo.
  prometheus
  # zlib (the zlib MIA score) and gnuplot (the method-comparison plot).
  zlib1g-dev gnuplot-nox
  # PyTorch over the same LibTorch, for the benchmark peer only
  # (benchmarks/unlearning_step_peer.py, run with /usr/bin/python3); nothing
  # Lethe builds or serves imports it.
  python3-torch
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null |
      grep -qx installed; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  sudo=(sudo)
fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q "${missing[@]}"

# LibTorch links libblas.so.3; make sure the alternative points at OpenBLAS.
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 || true)
case "$blas" in
  *openblas*) ;;
  *) echo "install_deps: warning: libblas.so.3 is $blas, not OpenBLAS;" \
          "LibTorch will be slow (see update-alternatives --config" \
          "libblas.so.3-x86_64-linux-gnu)" >&2 ;;
esac
echo "install_deps: done"
