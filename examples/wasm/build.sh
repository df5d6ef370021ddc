#!/usr/bin/env bash
# Builds the example plugins (and the test plugins under testdata/) from source with the Go
# toolchain: GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared (a WASI reactor exporting
# on_request/on_response). Each lands as plugin.wasm beside its main.go.
#   bash examples/wasm/build.sh            # all of them
#   bash examples/wasm/build.sh auth       # one
set -euo pipefail
cd "$(dirname "$0")"
if [ $# -eq 0 ]; then
  set -- auth headers testdata/trap testdata/spin testdata/tag testdata/noop
fi
for dir in "$@"; do
  GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags=-s \
    -o "$dir/plugin.wasm" "./$dir"
  echo "built examples/wasm/$dir/plugin.wasm ($(wc -c <"$dir/plugin.wasm") bytes)"
done
