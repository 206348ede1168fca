#!/usr/bin/env bash
# ociimage_test.sh checks scripts/ociimage.sh's images for real: it builds
# them (or takes the archives already in DIR), starts a private containerd
# (its own root, state and socket in a temporary directory; CRI off), imports
# the three archives with plain `ctr -n k8s.io images import`, checks the
# names they get, and runs each: babelfish --help, id -u (65532) and
# espeak-ng --version in the babelfish image, minio --version and id -u (1000)
# in the minio image, /pause until it is killed. Then it stops containerd and
# unmounts and removes everything it made.
#
#   scripts/ociimage_test.sh [--tag TAG] [DIR]
#
# Needs root (containerd, runc, overlayfs mounts). No DIR: a temporary one.
set -euo pipefail

log() { printf 'ociimage_test: %s\n' "$*" >&2; }
die() { printf 'ociimage_test: FAIL: %s\n' "$*" >&2; exit 1; }

TAG=dev
DIR=""
while (($#)); do
  case "$1" in
    --tag) TAG=$2; shift 2 ;;
    -h|--help) sed -n 's/^#   scripts/usage: scripts/p' "$0" >&2; exit 0 ;;
    *) DIR=$1; shift ;;
  esac
done
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || die "needs root: containerd and runc mount the images' layers"
for c in containerd ctr runc; do
  command -v "$c" >/dev/null || die "$c not found: run \`make tools\` (scripts/bootstrap.sh installs containerd and runc)"
done

T=$(mktemp -d -t ociimage_test.XXXXXX)
CTRD_PID=""
cleanup() {
  set +e
  if [[ -n "$CTRD_PID" ]]; then
    # Containers left by a failed check, then the daemon.
    for c in $(ctr --address "$T/c.sock" -n k8s.io containers ls -q 2>/dev/null); do
      ctr --address "$T/c.sock" -n k8s.io tasks kill -s KILL "$c" >/dev/null 2>&1
      sleep 0.5
      ctr --address "$T/c.sock" -n k8s.io tasks delete -f "$c" >/dev/null 2>&1
      ctr --address "$T/c.sock" -n k8s.io containers delete "$c" >/dev/null 2>&1
    done
    kill "$CTRD_PID" 2>/dev/null
    wait "$CTRD_PID" 2>/dev/null
  fi
  # The cgroups, then whatever is still mounted under it, deepest first.
  [[ -z "${CG:-}" ]] || for d in /sys/fs/cgroup/*/"${CG#/}"; do
    [[ -d "$d" ]] && { rmdir "$d"/* 2>/dev/null; rmdir "$d"; }
  done
  awk -v t="$T" 'index($2, t "/") == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do umount "$m" || umount -l "$m"; done
  rm -rf "$T"
}
trap cleanup EXIT

if [[ -z "$DIR" ]]; then
  DIR="$T/out"
  scripts/ociimage.sh --tag "$TAG" "$DIR"
fi
for f in babelfish minio pause; do
  [[ -f "$DIR/$f.oci.tar" ]] || die "$DIR/$f.oci.tar not found: run scripts/ociimage.sh $DIR"
done

cat >"$T/config.toml" <<EOF
version = 2
root = "$T/root"
state = "$T/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/c.sock"
[ttrpc]
  address = "$T/c.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
log "starting a private containerd in $T"
containerd --config "$T/config.toml" >"$T/containerd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 100); do
  [[ -S "$T/c.sock" ]] && ctr --address "$T/c.sock" version >/dev/null 2>&1 && break
  kill -0 "$CTRD_PID" 2>/dev/null || { tail -n 20 "$T/containerd.log" >&2; die "containerd exited"; }
  sleep 0.1
done
ctr() { command ctr --address "$T/c.sock" -n k8s.io "$@"; }
# runc's state and the containers' cgroups stay private to this run too.
RUN=(--runc-root "$T/runc")
CG="/${T##*/}"

for f in babelfish minio pause; do
  log "ctr -n k8s.io images import $DIR/$f.oci.tar"
  ctr images import "$DIR/$f.oci.tar" >&2
done
names=$(ctr images ls -q)
printf '%s\n' "$names" | sed 's/^/ociimage_test: imported: /' >&2
for n in "docker.io/babelfish/babelfish:$TAG" "docker.io/babelfish/minio:$TAG" docker.io/babelfish/pause:3.10; do
  grep -qxF "$n" <<<"$names" || die "$n not among the imported images"
done
[[ $(wc -l <<<"$names") == 3 ]] || die "want exactly 3 images, got: $names"

BF="docker.io/babelfish/babelfish:$TAG"
MN="docker.io/babelfish/minio:$TAG"
# expect NAME WANT IMAGE ARGS...: run ARGS (all of them: ctr replaces the
# entrypoint too) in IMAGE and want WANT in its output.
expect() {
  local name=$1 want=$2 image=$3 out; shift 3
  out=$(ctr run "${RUN[@]}" --cgroup "$CG/$name" --rm "$image" "oit-$name" "$@" 2>&1) || { printf '%s\n' "$out" >&2; die "$name: ctr run $image $* failed"; }
  grep -qF -- "$want" <<<"$out" || { printf '%s\n' "$out" >&2; die "$name: want \"$want\" in the output of $*"; }
  log "ok: $name: $(grep -F -m 1 -- "$want" <<<"$out")"
}
out=$(ctr run "${RUN[@]}" --cgroup "$CG/help" --rm "$BF" oit-help 2>&1) || { printf '%s\n' "$out" >&2; die "babelfish (entrypoint, cmd --help) failed"; }
grep -qi usage <<<"$out" || { printf '%s\n' "$out" >&2; die "babelfish --help printed no usage"; }
log "ok: babelfish image's default command (babelfish --help): $(head -n 1 <<<"$out")"
expect babelfish-uid 65532 "$BF" /usr/bin/id -u
expect babelfish-gid 65532 "$BF" /usr/bin/id -g
expect espeak-ng "eSpeak NG" "$BF" /usr/bin/espeak-ng --version
expect espeak-ng-speaks RIFF "$BF" sh -c 'espeak-ng --stdout "hello" | head -c 4'
expect cldr-core ok "$BF" sh -c 'test -d /usr/share/unicode/cldr && echo ok'
expect ca-certificates ok "$BF" sh -c 'test -s /etc/ssl/certs/ca-certificates.crt && echo ok'
expect no-apt-lists empty "$BF" sh -c 'find /var/lib/apt/lists /var/cache/apt -type f ! -name lock | grep . || echo empty'
expect minio-version "minio version" "$MN" /usr/bin/minio --version
expect minio-uid "1000 1000" "$MN" sh -c 'echo $(id -u) $(id -g)'

log "starting the pause image"
ctr run "${RUN[@]}" --cgroup "$CG/pause" -d docker.io/babelfish/pause:3.10 oit-pause >/dev/null
sleep 1
st=$(ctr tasks ls | awk '$1 == "oit-pause" { print $3 }')
[[ "$st" == RUNNING ]] || die "pause is $st, not RUNNING"
pid=$(ctr tasks ls | awk '$1 == "oit-pause" { print $2 }')
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
[[ "$uid" == 65535 ]] || die "pause runs as uid $uid, want 65535"
ctr tasks kill -s TERM oit-pause
for _ in $(seq 50); do
  st=$(ctr tasks ls | awk '$1 == "oit-pause" { print $3 }')
  [[ "$st" == STOPPED ]] && break
  sleep 0.1
done
[[ "$st" == STOPPED ]] || die "pause did not stop on SIGTERM ($st)"
ctr tasks delete oit-pause >/dev/null
ctr containers delete oit-pause
log "ok: pause ran as uid 65535 and stopped on SIGTERM"
log "PASS"
