#!/usr/bin/env bash
# Checks that every tracked C++ file follows .clang-format (Google style).
# Prints the files that do not and exits 1; `tools/lint.sh --fix` rewrites
# them in place.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.h' '*.cc')
if [[ "${1:-}" == "--fix" ]]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=()
for file in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$file" >/dev/null 2>&1; then
    bad+=("$file")
  fi
done
if ((${#bad[@]} > 0)); then
  echo "lint: not clang-formatted (run tools/lint.sh --fix):"
  printf '  %s\n' "${bad[@]}"
  exit 1
fi
echo "lint: ${#files[@]} C++ files formatted"
