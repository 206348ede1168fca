#!/usr/bin/env bash
# genproto.sh regenerates the Go code for every .proto under api/ with protoc
# (Debian's protobuf-compiler) and the protoc-gen-go plugins pinned in the
# tools cache. The generated files are committed; CI checks they are current.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$(scripts/bootstrap.sh --print-dir)"
export PATH="$TOOLS/bin:$PATH"
for f in $(find api -name '*.proto' | sort); do
  protoc -I api --go_out=api --go_opt=paths=source_relative \
    --go-grpc_out=api --go-grpc_opt=paths=source_relative "$f"
  echo "genproto: $f"
done
