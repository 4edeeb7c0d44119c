#!/bin/sh
echo "coverage is not available in Lethe's offline Bazel build" >&2
exit 1
