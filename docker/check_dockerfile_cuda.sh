#!/usr/bin/env bash
# What can be checked of docker/Dockerfile.cuda without building it (no
# registry, no GPU here):
#   - every package of tools/install_deps.sh (the only package list) has a
#     "# deps: DEBIAN -> UBUNTU" line, and each UBUNTU package is installed
#     (or downloaded) by the Dockerfile; "-" needs a reason in parentheses;
#   - the base images are pinned (a tag, not latest);
#   - the CMake mirror is configured with -DLETHE_WITH_NCCL=ON against the
#     LibTorch it unpacks, and every --target is an executable of
#     CMakeLists.txt, lethe-worker, lethe-coordinator and lethe among them;
#   - the last stage copies each built binary to /usr/local/bin, and its
#     ENTRYPOINT is one of them;
#   - every RUN command is valid bash (bash -n; the Dockerfile's SHELL).
# Usage: check_dockerfile_cuda.sh DOCKERFILE INSTALL_DEPS_SH CMAKELISTS
# Prints "N passed, N failed" (one case per check) and exits non-zero on a
# failure.
set -uo pipefail
dockerfile=$1
install_deps=$2
cmakelists=$3
passed=0
failed=0

check() {  # check NAME OK(0|1) [DETAIL]
  if [[ "$2" == 1 ]]; then
    passed=$((passed + 1))
    echo "ok: $1"
  else
    failed=$((failed + 1))
    echo "FAILED: $1${3:+: $3}"
  fi
}

# Instructions with continuation lines joined, comments dropped.
instructions() {
  sed -e '/^[[:space:]]*#/d' "$dockerfile" |
    awk '{ if (sub(/\\$/, "")) { line = line $0 } else { print line $0; line = "" } }' |
    sed -e '/^[[:space:]]*$/d'
}

# --- Packages ------------------------------------------------------------------
mapfile -t packages < <(
  sed -n '/^packages=(/,/^)/p' "$install_deps" | sed -e '1d;$d' -e 's/#.*//' |
    tr -s ' \t' '\n' | sed '/^$/d')
check "tools/install_deps.sh lists packages" \
  "$( ((${#packages[@]} > 10)) && echo 1 || echo 0)" "${#packages[@]} found"
body=$(instructions)
declare -A mapped=()
while read -r debian arrow ubuntu rest; do
  mapped[$debian]=1
  listed=0
  for package in "${packages[@]}"; do
    [[ "$package" == "$debian" ]] && listed=1
  done
  check "deps line for $debian names a package of install_deps.sh" "$listed"
  if [[ "$arrow" != "->" || -z "$ubuntu" ]]; then
    check "deps line for $debian reads 'DEBIAN -> UBUNTU|-'" 0
  elif [[ "$ubuntu" == "-" ]]; then
    check "$debian: left out with a reason" \
      "$([[ "$rest" =~ ^\(.+\)$ ]] && echo 1 || echo 0)" "'$rest'"
  else
    check "$debian: the Dockerfile installs $ubuntu" \
      "$(grep -qE "apt-get (install|download)[^&]*[[:space:]]$(
         printf '%s' "$ubuntu" | sed 's/[+.]/\\&/g')([[:space:]]|$)" \
         <<<"$body" && echo 1 || echo 0)"
  fi
done < <(sed -n 's/^# deps: //p' "$dockerfile")
for package in "${packages[@]}"; do
  check "install_deps.sh's $package has a deps line" "${mapped[$package]:-0}"
done

# --- Base images ------------------------------------------------------------------
while read -r image; do
  check "base image $image is pinned" \
    "$([[ "$image" =~ :[0-9][^:]*$ ]] && echo 1 || echo 0)"
done < <(sed -n 's/^ARG [A-Z_]*IMAGE=//p' "$dockerfile")
stages=$(grep -c '^FROM ' "$dockerfile")
check "a build stage and a runtime stage" "$( ((stages == 2)) && echo 1 || echo 0)" \
  "$stages FROM lines"

# --- The CMake build -------------------------------------------------------------
configure=$(grep -E '(^|[[:space:]])cmake -S' <<<"$body")
check "cmake configures with -DLETHE_WITH_NCCL=ON" \
  "$(grep -q -- '-DLETHE_WITH_NCCL=ON' <<<"$configure" && echo 1 || echo 0)"
check "cmake finds the unpacked LibTorch" \
  "$(grep -q -- '-DCMAKE_PREFIX_PATH=/opt/libtorch' <<<"$configure" &&
     grep -q 'unzip -q /tmp/libtorch.zip -d /opt' <<<"$body" && echo 1 || echo 0)"
mapfile -t targets < <(grep -oE -- '--target( [a-z][a-z-]*)+' <<<"$body" |
                         sed 's/^--target //' | tr ' ' '\n')
for needed in lethe-worker lethe-coordinator lethe; do
  found=0
  for target in "${targets[@]}"; do [[ "$target" == "$needed" ]] && found=1; done
  check "builds $needed" "$found"
done
runtime=$(awk '/^FROM /{n++} n == 2' "$dockerfile" |
            awk '{ if (sub(/\\$/, "")) { line = line $0 } else { print line $0; line = "" } }')
for target in "${targets[@]}"; do
  check "$target is an executable of CMakeLists.txt" \
    "$(grep -qE "^add_executable\($target " "$cmakelists" && echo 1 || echo 0)"
  check "the runtime stage has /usr/local/bin/$target" \
    "$(grep -E '^COPY --from=build .*/usr/local/bin/$' <<<"$runtime" |
       grep -qE "/usr/local/bin/$target " && echo 1 || echo 0)"
done
entrypoint=$(sed -n 's/^ENTRYPOINT \["\([^"]*\)".*/\1/p' <<<"$runtime")
found=0
for target in "${targets[@]}"; do [[ "$target" == "$entrypoint" ]] && found=1; done
check "ENTRYPOINT $entrypoint is a built binary" "$found"

# --- RUN commands ----------------------------------------------------------------
check "SHELL is bash with pipefail" \
  "$(grep -qF 'SHELL ["/bin/bash", "-o", "pipefail", "-c"]' "$dockerfile" &&
     echo 1 || echo 0)"
index=0
while IFS= read -r command; do
  index=$((index + 1))
  errors=$(bash -n <<<"$command" 2>&1)
  check "RUN command $index is valid bash" "$([[ -z "$errors" ]] && echo 1 || echo 0)" \
    "$errors"
done < <(sed -n 's/^RUN //p' <<<"$body")
check "RUN commands found" "$( ((index >= 4)) && echo 1 || echo 0)" "$index"

echo "$passed passed, $failed failed"
((failed == 0))
