#!/usr/bin/env bash
# The README's test command. On a fresh Debian 12 machine it installs what
# Lethe needs (tools/install_deps.sh), checks formatting, builds everything
# with Bazel (offline) and runs every test, then prints one closing line:
#   N passed, N failed[, N skipped]
# counting individual test cases (GoogleTest cases; one per non-gtest target),
# with the lint check and the fuzz smoke run counted as one more case each. Exits non-zero on any failure.
#
# Extra arguments go to `bazel test`, e.g. tools/test.sh --test_filter=Npo*
set -uo pipefail
cd "$(dirname "$0")/.."

tools/install_deps.sh || { echo "0 passed, 1 failed"; exit 1; }

lint_failed=0
tools/lint.sh || lint_failed=1
# Every parser's fuzz target over its seed corpus (fuzz/, about a minute).
fuzz_failed=0
LETHE_FUZZ_BUILD_JOBS="$(nproc)" tools/fuzz.sh smoke || fuzz_failed=1

bazel_flags=(--keep_going)
# Tests that use the workspace's reference data (TOFU, MUSE) read it from
# $LETHE_SHARED_DIR, ../shared by default; they skip with a message without it,
# or fail when LETHE_REQUIRE_SHARED is set (.ci/run sets it).
shared_dir=${LETHE_SHARED_DIR:-$(cd .. && pwd)/shared}
bazel_flags+=(--test_env=LETHE_SHARED_DIR="$shared_dir")
if [[ -n "${LETHE_REQUIRE_SHARED:-}" ]]; then
  bazel_flags+=(--test_env=LETHE_REQUIRE_SHARED)
fi
if [[ -n "${CI:-}" ]]; then
  bazel_flags+=(--config=ci)
fi
bazel test "${bazel_flags[@]}" "$@" //...
bazel_status=$?

mapfile -t targets < <(bazel query --noshow_progress 'tests(//...)' 2>/dev/null)
passed=$((2 - lint_failed - fuzz_failed))
failed=$((lint_failed + fuzz_failed))
skipped=0
missing=()
for target in "${targets[@]}"; do
  package=${target#//}
  package=${package%%:*}
  name=${target##*:}
  xml="bazel-testlogs/$package/$name/test.xml"
  if [[ ! -f "$xml" ]]; then
    missing+=("$target")
    continue
  fi
  read -r p f s < <(awk '
    function finish() {
      if (failed) f++; else if (skipped) s++; else p++
      in_case = 0
    }
    /<testcase / {
      in_case = 1; failed = 0; skipped = ($0 ~ /result="skipped"/)
      if ($0 ~ /\/>[[:space:]]*$/) { finish(); next }
    }
    in_case && /<(failure|error)[ >]/ { failed = 1 }
    in_case && /<skipped/ { skipped = 1 }
    in_case && /<\/testcase>/ { finish() }
    END { print p + 0, f + 0, s + 0 }' "$xml")
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
done

if ((${#missing[@]} > 0)); then
  echo "test: no results for (build failed?): ${missing[*]}"
  failed=$((failed + ${#missing[@]}))
fi
if ((bazel_status != 0 && failed == 0)); then
  echo "test: bazel exited with status $bazel_status"
  failed=1
fi

summary="$passed passed, $failed failed"
if ((skipped > 0)); then
  summary+=", $skipped skipped"
fi
echo "$summary"
((failed == 0))
