#!/usr/bin/env bash
# make demo: the whole Babelfish pipeline on this machine, from a fresh clone.
#
#   1. bootstrap the real parts (scripts/bootstrap.sh) and build bin/babelfish
#   2. babelfish up: MinIO, the local executor, simulated GPUs, serving, dashboard
#   3. build a corpus of spoken numbers and days in 8 languages (espeak-ng x CLDR)
#   4. train a TrainingJob with 2 ranks for a few minutes (DEMO_BUDGET)
#   5. evaluate it (concept accuracy), promote it, let serving pick it up
#   6. translate a sample utterance into another language: out.wav
#
# Everything runs under a fresh state directory (DEMO_STATE, default a new
# temporary one) and stops when the script ends. Tunables: DEMO_BUDGET
# (training wall time, default 3m), DEMO_LANGS, DEMO_OUT (default ./out.wav).
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET=${DEMO_BUDGET:-3m}
LANGS=${DEMO_LANGS:-de,en,es,fr,it,nl,pt,sv}
OUT=${DEMO_OUT:-$PWD/out.wav}
STATE=${DEMO_STATE:-$(mktemp -d -t babelfish-demo-XXXXXX)}
MODEL=demo
JOB=demo-train
start=$(date +%s)
step() { printf '\n=== [%4ds] %s\n' "$(( $(date +%s) - start ))" "$*"; }

step "bootstrap: tools cache and bin/babelfish"
scripts/bootstrap.sh
go build -o bin/babelfish ./cmd/babelfish
BF=$PWD/bin/babelfish

step "babelfish up (state in $STATE)"
"$BF" up --fake-gpus=dgxa100 --state-dir "$STATE" --listen 127.0.0.1:0 --serve-listen 127.0.0.1:0 \
  --model "$MODEL" >"$STATE/up.log" 2>&1 &
UP=$!
stop_up() {
  if kill -0 "$UP" 2>/dev/null; then
    kill -TERM "$UP"
    wait "$UP" || true
  fi
}
trap stop_up EXIT
for _ in $(seq 1 600); do
  [[ -s "$STATE/up.json" ]] && break
  kill -0 "$UP" 2>/dev/null || { cat "$STATE/up.log"; echo "babelfish up exited" >&2; exit 1; }
  sleep 0.2
done
[[ -s "$STATE/up.json" ]] || { cat "$STATE/up.log"; echo "babelfish up not ready" >&2; exit 1; }
sed -n '/babelfish up: ready/,$p' "$STATE/up.log"
# shellcheck disable=SC1091
source "$STATE/env"

step "dataset: numbers and days in $LANGS"
"$BF" dataset build --name demo --version v1 --languages "$LANGS" \
  --categories num,day --number-max 20 --variants m1,f1,m3,f3,m7 --unseen-voices m7 \
  --unseen-phrases num:17 --speeds 160,180 --pitches 50 --shard-size 8

step "train: 2 ranks for $BUDGET"
cat >"$STATE/job.yaml" <<EOF
apiVersion: babelfish.dev/v1alpha1
kind: TrainingJob
metadata:
  name: $JOB
spec:
  dataset: {name: demo, version: v1}
  model:
    name: $MODEL
    languages: [${LANGS//,/, }]
    steps: 1000000
    batchSize: 32
    learningRate: 0.003
    parameters:
      budget: $BUDGET
      segments: 8
      enc: [192]
      context: 96
      dec: 128
      units: 48
      checkpoint-every: 2000
      log-every: 200
  workers: 2
  gpusPerWorker: 1
  checkpointInterval: 1m
  template:
    image: babelfish:latest
EOF
"$BF" submit -f "$STATE/job.yaml" --wait
"$BF" jobs

step "evaluate the last checkpoint (concept accuracy: does the output say the right thing?)"
"$BF" eval --job "$JOB" --per-dir 2 | tee "$STATE/eval.txt"

step "promote it to model $MODEL"
"$BF" promote --model "$MODEL" --job "$JOB"

step "translate a German sample (a held-out voice) into French"
# "zwölf" (12) by the held-out voice m7: a phrase the model trained on, in a
# voice it never heard (17 is the held-out phrase).
espeak-ng -v de+m7 -s 170 -w "$STATE/sample.wav" "zwölf"
# Serving follows the model's current release: it answers once it has
# loaded and warmed up the promoted one.
for try in $(seq 1 60); do
  if "$BF" translate --server "$BABELFISH_TRANSLATOR" --to fr "$STATE/sample.wav" -o "$OUT"; then
    break
  fi
  [[ $try == 60 ]] && { echo "serving never answered" >&2; exit 1; }
  echo "(serving is still loading and warming up the release; trying again)"
  sleep 2
done

step "done"
acc=$(grep -E '^unseen_voices +model' "$STATE/eval.txt" || true)
echo "promoted model $MODEL: concept accuracy on unseen voices: ${acc:-see $STATE/eval.txt}"
echo "input:  $STATE/sample.wav (German, \"zwölf\", in a voice the model never heard)"
echo "output: $OUT (French)"
echo "took $(( $(date +%s) - start )) s; state, logs and the job record are in $STATE"
