#!/usr/bin/env bash
# gencrd.sh regenerates, from the Go types in api/v1alpha1, their deepcopy
# methods (api/v1alpha1/zz_generated.deepcopy.go) and the
# CustomResourceDefinitions with OpenAPI validation (charts/babelfish/crds),
# with controller-gen pinned in the tools cache. Both outputs are committed;
# CI checks they are current.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$(scripts/bootstrap.sh --print-dir)"
GEN="$TOOLS/bin/controller-gen"
if [[ ! -x "$GEN" ]]; then
  echo "gencrd: $GEN not found: run \`make tools\` (scripts/bootstrap.sh) to build it" >&2
  exit 1
fi
OUT=charts/babelfish/crds
mkdir -p "$OUT"
# Stale files of renamed types must not linger.
rm -f "$OUT"/babelfish.dev_*.yaml
# allowDangerousTypes: loss and eval metrics are floats, as the trainer
# reports them.
"$GEN" object paths=./api/v1alpha1/...
"$GEN" crd:allowDangerousTypes=true paths=./api/v1alpha1/... output:crd:artifacts:config="$OUT"
for f in "$OUT"/*.yaml; do echo "gencrd: $f"; done
