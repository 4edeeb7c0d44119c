#!/usr/bin/env bash
# Gathers, on this Debian machine, what tools/device/service_gpu_check.sh
# needs on a GPU machine that has a CUDA LibTorch (PyTorch's wheel) but none
# of Debian's libraries. From the repository root, after `bazel build
# //services/...` and `lethe prepare-benchmark`:
#
#   bash tools/device/service_carry.sh [CARRY]
#
# writes CARRY/service (CARRY defaults to .device_carry, git-ignored):
#   include/     Debian's headers of gRPC, protobuf, Abseil, prometheus-cpp,
#                nlohmann-json, glog, gflags, OpenSSL, libyaml, PCRE2, SQLite, zlib
#                and Gloo
#   lib/         the shared libraries the three binaries need besides glibc,
#                libstdc++ and LibTorch, with their own dependencies, each
#                under its SONAME
#   generated/   protoc and grpc_cpp_plugin output for proto/
#   sources.txt  the .cc files of lethe-worker, lethe-coordinator and lethe
#                (Bazel's view of their dependencies), mains excluded
#   benchmark/   the embedded benchmark's target model, data and the retain
#                model's TOFU_EVAL.json
# Pass the folder to the device tool as a carried path (`carry`).
set -euo pipefail
cd "$(dirname "$0")/../.."
carry=${1:-.device_carry}/service
binaries=(bazel-bin/services/worker/lethe-worker
          bazel-bin/services/coordinator/lethe-coordinator
          bazel-bin/services/cli/lethe)
benchmark=.lethe/benchmark
for f in "${binaries[@]}" "$benchmark/target/config.json" \
         "$benchmark/retain/TOFU_EVAL.json"; do
  [[ -e "$f" ]] || {
    echo "missing $f: run bazel build //services/... and lethe prepare-benchmark" >&2
    exit 1
  }
done
rm -rf "$carry"
mkdir -p "$carry"/{include,lib,generated,benchmark}

# Headers: whole folders, or single files, of /usr/include.
for h in grpc grpc++ grpcpp absl prometheus nlohmann gloo glog gflags openssl \
         yaml.h pcre2.h \
         sqlite3.h sqlite3ext.h zlib.h zconf.h sentencepiece_processor.h \
         sentencepiece_trainer.h; do
  cp -r "/usr/include/$h" "$carry/include/"
done
# OpenSSL's per-architecture headers (opensslconf.h, configuration.h).
cp /usr/include/x86_64-linux-gnu/openssl/*.h "$carry/include/openssl/"
mkdir -p "$carry/include/google"
cp -r /usr/include/google/protobuf "$carry/include/google/"

# Libraries: each binary's direct dependencies other than the C and C++
# runtimes and LibTorch (the GPU machine brings its own), then whatever
# those load in turn.
is_provided() {
  [[ "$1" =~ ^(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux-x86-64|libtorch|libtorch_cpu|libc10|libgloo)\.so ]]
}
declare -A wanted=()
for binary in "${binaries[@]}"; do
  while read -r soname; do
    is_provided "$soname" || wanted[$soname]=1
  done < <(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done
for soname in "${!wanted[@]}"; do
  path=$(ldconfig -p | awk -v s="$soname" '$1 == s && /x86-64/ && !p {p = $NF} END {print p}')
  [[ -n "$path" ]] || { echo "cannot find $soname" >&2; exit 1; }
  cp -L "$path" "$carry/lib/$soname"
  while read -r dep dep_path; do
    is_provided "$dep" || cp -L "$dep_path" "$carry/lib/$dep"
  done < <(ldd "$path" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}')
done

# Generated protocol sources, as the Bazel and CMake builds make them.
protoc --proto_path=proto --cpp_out="$carry/generated" \
  --grpc_out="$carry/generated" \
  --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" \
  $(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)

# Sources of the three binaries, as Bazel resolves their dependencies.
bazel query --noshow_progress \
  'kind("source file", deps(//services/worker:lethe-worker) union
                       deps(//services/coordinator:lethe-coordinator) union
                       deps(//services/cli:lethe))' 2>/dev/null |
  sed -n 's|^//\([^:]*\):\(.*\.cc\)$|\1/\2|p' | grep -v '_main\.cc$' |
  sort >"$carry/sources.txt"

cp -r "$benchmark/target" "$benchmark/data" "$carry/benchmark/"
mkdir -p "$carry/benchmark/retain"
cp "$benchmark/retain/TOFU_EVAL.json" "$carry/benchmark/retain/"

echo "$carry: $(du -sh "$carry" | cut -f1), $(ls "$carry/lib" | wc -l) libraries," \
  "$(wc -l <"$carry/sources.txt") sources"
