#!/usr/bin/env bash
# ociimage.sh assembles Babelfish's container images without a container
# daemon or a registry, from Debian's packages and this repository, with
# mmdebstrap and umoci (both installed by `make tools`):
#
#   scripts/ociimage.sh [--tag TAG] OUTDIR
#
# writes three OCI image archives (a tar of an OCI image layout: oci-layout,
# index.json, blobs/sha256/...) into OUTDIR:
#
#   babelfish.oci.tar  docker.io/babelfish/babelfish:TAG (TAG default dev): the
#                      image the Dockerfile builds. Layer 1, the Debian base:
#                      the host's release (e.g. bookworm), variant minbase,
#                      from the host's apt sources, with espeak-ng,
#                      unicode-cldr-core and ca-certificates, user and group
#                      65532 babelfish, no apt lists or caches, docs and man
#                      pages left out as in debian:*-slim. Layer 2:
#                      /usr/local/bin/babelfish, built as the Dockerfile does
#                      (cgo on, -trimpath -ldflags "-s -w"). User 65532:65532,
#                      entrypoint /usr/local/bin/babelfish, cmd --help.
#   minio.oci.tar      docker.io/babelfish/minio:TAG: the same base layer (the
#                      same blob), then /usr/bin/minio from the tools cache and
#                      user and group 1000 minio. User 1000:1000, entrypoint
#                      /usr/bin/minio (the chart passes `server /data ...`).
#   pause.oci.tar      docker.io/babelfish/pause:3.10: /pause alone, compiled
#                      statically with gcc from build/pause/linux/pause.c of
#                      the k8s.io/kubernetes module bootstrap.sh pins. User
#                      65535:65535, entrypoint /pause.
#
# Import them into containerd for a local kubelet (imagePullPolicy: Never):
#
#   ctr -n k8s.io images import OUTDIR/babelfish.oci.tar   # and the others
#
# How ctr (containerd 1.6) names what it imports from an OCI archive: for each
# manifest in index.json, the annotation io.containerd.image.name as it is,
# whatever the flags; failing that, org.opencontainers.image.ref.name: a bare
# tag T becomes import-YYYY-MM-DD:T, or REPO:T with --base-name REPO; a full
# reference is kept as it is, but dropped when --base-name names another
# repository. (--index-name N names the whole index N; --digests adds
# PREFIX@sha256:... names.) So each archive's one manifest carries the full
# name in io.containerd.image.name, and the tag alone in
# org.opencontainers.image.ref.name as the OCI layout spec has it; a plain
# `ctr -n k8s.io images import FILE` then names it exactly, and no
# --base-name, --index-name or --all-platforms is needed (each archive holds
# one linux/amd64 image). Keep ctr's default unpacking (no --no-unpack): the
# CRI plugin runs containers from the unpacked overlayfs snapshots.
# "docker.io/" is the name the kubelet gives `babelfish/babelfish:dev`; nothing
# is pulled from or pushed to any registry.
#
# The base layer's tarball is cached in the tools cache, under images/, keyed
# by everything that goes into it (release, packages, sources, this script's
# BASE_RECIPE version), so only the first run runs mmdebstrap (half a
# minute with a near mirror); a warm run takes seconds plus the go build. Layers are gzip
# tarballs with fixed owners, modes and times (SOURCE_DATE_EPOCH, or the
# commit time of HEAD), so the same inputs give the same digests.
#
# Environment: BABELFISH_TOOLS (the tools cache, see bootstrap.sh);
# OCIIMAGE_MINIO_WAIT (seconds to wait for a bootstrap.sh that is still
# building MinIO; default 1800); SOURCE_DATE_EPOCH.
set -euo pipefail

log() { printf 'ociimage: %s\n' "$*" >&2; }
die() { printf 'ociimage: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '/^#   scripts\/ociimage.sh/p' "$0" | sed 's/^#   /usage: /' >&2; exit "${1:-2}"; }

TAG=dev
OUTDIR=""
while (($#)); do
  case "$1" in
    --tag) (($# >= 2)) || usage; TAG=$2; shift 2 ;;
    --tag=*) TAG=${1#--tag=}; shift ;;
    -h|--help) usage 0 ;;
    -*) log "unknown option $1"; usage ;;
    *) [[ -z "$OUTDIR" ]] || usage; OUTDIR=$1; shift ;;
  esac
done
[[ -n "$OUTDIR" ]] || usage
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--tag $TAG is not a valid image tag"

# The names images import under. A change here is a change for the chart.
REPO_PREFIX=docker.io/babelfish
BABELFISH_NAME="$REPO_PREFIX/babelfish:$TAG"
MINIO_NAME="$REPO_PREFIX/minio:$TAG"
PAUSE_NAME="$REPO_PREFIX/pause:3.10"

# Bump BASE_RECIPE when the way the base is made changes in a way the key
# below does not see.
BASE_RECIPE=2
BASE_VARIANT=minbase
BASE_PACKAGES=(espeak-ng unicode-cldr-core ca-certificates)
# What debian:*-slim leaves out (its /etc/dpkg/dpkg.cfg.d/docker).
BASE_DPKGOPTS=(
  'path-exclude=/usr/share/doc/*'
  'path-include=/usr/share/doc/*/copyright'
  'path-exclude=/usr/share/groff/*'
  'path-exclude=/usr/share/info/*'
  'path-exclude=/usr/share/linda/*'
  'path-exclude=/usr/share/lintian/overrides/*'
  'path-exclude=/usr/share/locale/*'
  'path-exclude=/usr/share/man/*'
)
BASE_HOOKS=(
  'chroot "$1" groupadd --gid 65532 babelfish'
  'chroot "$1" useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin babelfish'
  # The runtime provides these two; the host's copies must not leak in.
  ': > "$1/etc/resolv.conf"'
  'echo localhost > "$1/etc/hostname"'
  'chmod 0644 "$1/etc/resolv.conf" "$1/etc/hostname"'
  'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old "$1"/var/log/apt/*'
)
# The base's files are dated at most this (2025-01-01T00:00:00Z), so a
# rebuild from the same packages gives the same tarball.
BASE_EPOCH=1735689600
KUBE_VERSION=v1.37.2

start=$SECONDS
OUTDIR=$(mkdir -p "$OUTDIR" && cd "$OUTDIR" && pwd)
cd "$(dirname "$0")/.."
REPO_ROOT=$(pwd)
TOOLS="$(scripts/bootstrap.sh --print-dir)"

missing=()
for c in mmdebstrap mmtarfilter umoci gcc strip go git tar gzip sha256sum flock; do
  command -v "$c" >/dev/null || missing+=("$c")
done
((${#missing[@]} == 0)) || die "missing commands: ${missing[*]}: run \`make tools\` (scripts/bootstrap.sh installs mmdebstrap and umoci; gcc, go and git come with the development setup)"

if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
  EPOCH=$SOURCE_DATE_EPOCH
else
  EPOCH=$(git -C "$REPO_ROOT" log -1 --format=%ct 2>/dev/null || echo "$BASE_EPOCH")
fi
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)

WORK=$(mktemp -d -t ociimage.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# --- the Debian base -------------------------------------------------------

. /etc/os-release
SUITE=${VERSION_CODENAME:-}
[[ -n "$SUITE" ]] || die "/etc/os-release names no VERSION_CODENAME: the base is the host's Debian release, so this must run on Debian"
ARCH=$(dpkg --print-architecture)

# The host's apt sources for SUITE, SUITE-updates and SUITE-security, as one
# deb822 file for mmdebstrap (other repositories the host may use are left
# out). ONELINE reads sources.list lines, DEB822 .sources stanzas.
ONELINE='
  function ours(s) { return s == suite || index(s, suite "-") == 1 }
  /^[[:space:]]*deb[[:space:]]/ {
    opts = ""; i = 2
    if ($2 ~ /^\[/) { while ($i !~ /\]$/ && i < NF) { opts = opts " " $i; i++ }; opts = opts " " $i; i++ }
    if (!ours($(i + 1))) next
    comps = ""; for (j = i + 2; j <= NF && $j !~ /^#/; j++) comps = comps " " $j
    printf "Types: deb\nURIs: %s\nSuites: %s\nComponents:%s\n", $i, $(i + 1), comps
    if (match(opts, /signed-by=[^] ]*/)) printf "Signed-By: %s\n", substr(opts, RSTART + 10, RLENGTH - 10)
    print ""
  }'
DEB822='
  function ours(s) { return s == suite || index(s, suite "-") == 1 }
  function flush(   n, k, w, s) {
    if (types ~ /(^|[[:space:]])deb([[:space:]]|$)/ && uris != "" && enabled != "no") {
      n = split(suites, w, /[[:space:]]+/); s = ""
      for (k = 1; k <= n; k++) if (w[k] != "" && ours(w[k])) s = s " " w[k]
      if (s != "") {
        printf "Types: deb\nURIs: %s\nSuites:%s\nComponents: %s\n", uris, s, comps
        if (signed != "") printf "Signed-By: %s\n", signed
        print ""
      }
    }
    types = uris = suites = comps = signed = enabled = ""
  }
  /^#/ { next }
  /^[[:space:]]*$/ { flush(); next }
  { v = $0; sub(/^[^:]*:[[:space:]]*/, "", v); k = tolower($1) }
  k == "types:" { types = v } k == "uris:" { uris = v } k == "suites:" { suites = v }
  k == "components:" { comps = v } k == "signed-by:" { signed = v } k == "enabled:" { enabled = tolower(v) }
  END { flush() }'
eval "$(apt-config shell APT_LIST Dir::Etc::sourcelist/f APT_PARTS Dir::Etc::sourceparts/d)"
SOURCES="$WORK/debian.sources"
: >"$SOURCES"
for f in "${APT_LIST:-}" "${APT_PARTS:-}"/*.list; do
  if [[ -f "$f" ]]; then awk -v suite="$SUITE" "$ONELINE" "$f" >>"$SOURCES"; fi
done
for f in "${APT_PARTS:-}"/*.sources; do
  if [[ -f "$f" ]]; then awk -v suite="$SUITE" "$DEB822" "$f" >>"$SOURCES"; fi
done
MIRROR_ARGS=()
if [[ -s "$SOURCES" ]]; then
  MIRROR_ARGS=("$SOURCES")
else
  log "no $SUITE entries in the host's apt sources; mmdebstrap uses its default Debian mirror"
fi

# The host's apt settings that decide whether its mirror is usable at all
# (a snapshot's expired Release files, a proxy).
APTOPTS=()
while IFS= read -r line; do
  APTOPTS+=("$line")
done < <(apt-config dump 2>/dev/null | grep -E '^Acquire::(Check-Valid-Until|Check-Date|http::Proxy|https::Proxy|Retries) ')

key_input() {
  printf 'recipe %s\nsuite %s\narch %s\nvariant %s\nepoch %s\n' "$BASE_RECIPE" "$SUITE" "$ARCH" "$BASE_VARIANT" "$BASE_EPOCH"
  printf 'package %s\n' "${BASE_PACKAGES[@]}"
  printf 'dpkgopt %s\n' "${BASE_DPKGOPTS[@]}"
  printf 'hook %s\n' "${BASE_HOOKS[@]}" 'hook-dir merged-usr'
  ((${#APTOPTS[@]} == 0)) || printf 'aptopt %s\n' "${APTOPTS[@]}"
  cat "$SOURCES"
}
BASE_KEY=$(key_input | sha256sum | cut -c1-16)
IMAGES="$TOOLS/images"
BASE_TAR="$IMAGES/debian-$SUITE-$ARCH-$BASE_KEY.tar"
mkdir -p "$IMAGES"

exec 9>"$IMAGES/.lock"
flock 9
if [[ -s "$BASE_TAR" ]]; then
  log "debian $SUITE base $BASE_KEY: cached ($BASE_TAR)"
else
  log "debian $SUITE base $BASE_KEY: running mmdebstrap (variant $BASE_VARIANT, ${BASE_PACKAGES[*]})"
  args=(--variant="$BASE_VARIANT" --architectures="$ARCH" --format=tar
    --include="$(IFS=,; echo "${BASE_PACKAGES[*]}")")
  for o in "${BASE_DPKGOPTS[@]}"; do args+=(--dpkgopt="$o"); done
  for o in "${APTOPTS[@]}"; do args+=(--aptopt="$o"); done
  for h in "${BASE_HOOKS[@]}"; do args+=(--customize-hook="$h"); done
  # merged-/usr the way debootstrap (and so debian:*-slim) does it, with the
  # usr-is-merged package: without it apt pulls in usrmerge and all of perl.
  hooks=$(dpkg -L mmdebstrap 2>/dev/null | grep '/hooks/merged-usr$' | head -n 1 || true)
  [[ -d "$hooks" ]] || die "mmdebstrap's merged-usr hook directory not found (dpkg -L mmdebstrap): reinstall mmdebstrap (make tools)"
  args+=(--hook-dir="$hooks")
  t0=$SECONDS
  if ! SOURCE_DATE_EPOCH=$BASE_EPOCH mmdebstrap --quiet "${args[@]}" "$SUITE" "$WORK/base-raw.tar" "${MIRROR_ARGS[@]}" 2>"$WORK/mmdebstrap.log"; then
    tail -n 30 "$WORK/mmdebstrap.log" >&2
    die "mmdebstrap failed (log above); it needs root, or unprivileged user namespaces with /etc/subuid and /etc/subgid set up, and the host's Debian mirror"
  fi
  # /dev belongs to the runtime: keep the directory, drop the device nodes.
  mmtarfilter --path-exclude='/dev/*' <"$WORK/base-raw.tar" >"$WORK/base.tar"
  rm -f "$WORK/base-raw.tar"
  key_input >"$IMAGES/debian-$SUITE-$ARCH-$BASE_KEY.recipe"
  mv "$WORK/base.tar" "$BASE_TAR"
  # Bases of older recipes are of no further use.
  for old in "$IMAGES/debian-$SUITE-$ARCH-"*.tar; do
    [[ "$old" == "$BASE_TAR" ]] || rm -f "$old" "${old%.tar}.recipe"
  done
  log "debian $SUITE base $BASE_KEY: built in $((SECONDS - t0))s, $(du -m "$BASE_TAR" | cut -f1) MiB"
fi
flock -u 9

# --- the layers above it ----------------------------------------------------

# layer_add TAR MODE UID GID DIR PATH...: append PATHs (relative to DIR, no
# recursion) to the layer tarball TAR with the given owner and mode and the
# time EPOCH, so that the layer does not depend on who builds it when.
layer_add() {
  local tar=$1 mode=$2 uid=$3 gid=$4 dir=$5; shift 5
  tar -C "$dir" -rf "$tar" --no-recursion --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$EPOCH" --owner="$uid" --group="$gid" --numeric-owner --mode="$mode" "$@"
}

# babelfish, as the Dockerfile builds it.
log "building /usr/local/bin/babelfish (go build -trimpath -ldflags \"-s -w\", cgo on)"
t0=$SECONDS
mkdir -p "$WORK/bf/usr/local/bin"
# cgo's warnings about go-nvml's deprecated calls are shown only if it fails.
if ! CGO_ENABLED=1 go build -trimpath -ldflags "-s -w" -o "$WORK/bf/usr/local/bin/babelfish" ./cmd/babelfish >"$WORK/build.log" 2>&1; then
  grep -v -e 'cgo-gcc-prolog' -e 'nvml.h:' -e 'DEPRECATED(' -e '^ *| *\^' "$WORK/build.log" | tail -n 40 >&2
  die "go build ./cmd/babelfish failed (output above)"
fi
"$WORK/bf/usr/local/bin/babelfish" --help >/dev/null 2>&1 || die "the built babelfish --help failed"
log "babelfish built in $((SECONDS - t0))s"
layer_add "$WORK/bf.tar" 0755 0 0 "$WORK/bf" usr usr/local usr/local/bin usr/local/bin/babelfish

# MinIO from the tools cache, and its user.
minio_ready() { compgen -G "$TOOLS/stamps/minio@*" >/dev/null && [[ -x "$TOOLS/bin/minio" ]]; }
if ! minio_ready; then
  wait_s=${OCIIMAGE_MINIO_WAIT:-1800}
  if pgrep -f 'bootstrap[.]sh' >/dev/null 2>&1 && ((wait_s > 0)); then
    log "$TOOLS/bin/minio is not built yet and bootstrap.sh is running: waiting up to ${wait_s}s for it"
    deadline=$((SECONDS + wait_s))
    until minio_ready || ((SECONDS >= deadline)) || ! pgrep -f 'bootstrap[.]sh' >/dev/null 2>&1; do sleep 5; done
  fi
fi
MINIO_MISSING=""
minio_ready || MINIO_MISSING="$TOOLS/bin/minio (with its stamp in $TOOLS/stamps) not found, so minio.oci.tar was not made: run \`make tools\` (scripts/bootstrap.sh builds MinIO) and run this again"
[[ -z "$MINIO_MISSING" ]] || log "$MINIO_MISSING; going on with the other images"
if [[ -z "$MINIO_MISSING" ]]; then
  MINIO_VERSION=$(basename "$(compgen -G "$TOOLS/stamps/minio@*" | head -n 1)"); MINIO_VERSION=${MINIO_VERSION#minio@}
  mkdir -p "$WORK/mn/usr/bin" "$WORK/mn/etc"
  cp "$TOOLS/bin/minio" "$WORK/mn/usr/bin/minio"
  tar -xf "$BASE_TAR" -C "$WORK/mn" --no-same-owner --no-same-permissions ./etc/passwd ./etc/group ./etc/shadow ./etc/gshadow \
    || die "the cached base $BASE_TAR lacks /etc/passwd, group, shadow or gshadow: delete it and run again"
  shadow_gid=$(awk -F: '$1 == "shadow" { print $3 }' "$WORK/mn/etc/group")
  [[ -n "$shadow_gid" ]] || die "the base has no shadow group"
  if ! grep -q '^minio:' "$WORK/mn/etc/passwd"; then
    ! awk -F: '$3 == 1000 { found = 1 } END { exit !found }' "$WORK/mn/etc/passwd" "$WORK/mn/etc/group" \
      || die "uid or gid 1000 is taken in the base"
    echo 'minio:x:1000:1000:MinIO:/nonexistent:/usr/sbin/nologin' >>"$WORK/mn/etc/passwd"
    echo 'minio:x:1000:' >>"$WORK/mn/etc/group"
    echo "minio:!:$((EPOCH / 86400)):0:99999:7:::" >>"$WORK/mn/etc/shadow"
    echo 'minio:!::' >>"$WORK/mn/etc/gshadow"
  fi
  layer_add "$WORK/mn.tar" 0755 0 0 "$WORK/mn" etc
  layer_add "$WORK/mn.tar" 0644 0 0 "$WORK/mn" etc/group etc/passwd
  layer_add "$WORK/mn.tar" 0640 0 "$shadow_gid" "$WORK/mn" etc/gshadow etc/shadow
  layer_add "$WORK/mn.tar" 0755 0 0 "$WORK/mn" usr usr/bin usr/bin/minio
fi

# pause, from Kubernetes' own source.
PAUSE_C="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBE_VERSION/build/pause/linux/pause.c"
if [[ ! -f "$PAUSE_C" ]]; then
  log "downloading k8s.io/kubernetes@$KUBE_VERSION from the module proxy for build/pause/linux/pause.c"
  mkdir -p "$WORK/mod"
  printf 'module ociimage.invalid/pause\n' >"$WORK/mod/go.mod"
  dir=$(cd "$WORK/mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') \
    || die "go mod download k8s.io/kubernetes@$KUBE_VERSION failed: it needs the Go module proxy"
  PAUSE_C="$dir/build/pause/linux/pause.c"
  [[ -f "$PAUSE_C" ]] || die "k8s.io/kubernetes@$KUBE_VERSION has no build/pause/linux/pause.c"
fi
PAUSE_TAG=$(sed -n 's/^TAG ?= *//p' "$(dirname "$PAUSE_C")/../Makefile" 2>/dev/null || true)
mkdir -p "$WORK/pause"
# Kubernetes' build/pause/Makefile: CFLAGS = -Os -Wall -Werror -static -DVERSION=v$(TAG)-$(REV), then strip.
gcc -Os -Wall -Werror -static -DVERSION="v${PAUSE_TAG:-3.10}-$KUBE_VERSION" -o "$WORK/pause/pause" "$PAUSE_C" \
  || die "gcc -static failed for $PAUSE_C: it needs gcc and libc6-dev (apt-get install gcc libc6-dev)"
strip "$WORK/pause/pause"
layer_add "$WORK/pause.tar" 0755 0 0 "$WORK/pause" pause
log "pause ${PAUSE_TAG:-3.10} compiled from k8s.io/kubernetes@$KUBE_VERSION build/pause/linux/pause.c"

# --- the images ---------------------------------------------------------------

REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || REVISION="$REVISION-dirty"
SOURCE_URL=$(git remote get-url origin 2>/dev/null || true)
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

L="$WORK/layout"
log "assembling the images with umoci"
umoci init --layout "$L"
umoci new --image "$L:base"
umoci raw add-layer --image "$L:base" --history.created "$CREATED" \
  --history.created_by "mmdebstrap --variant=$BASE_VARIANT --include=$(IFS=,; echo "${BASE_PACKAGES[*]}") $SUITE (scripts/ociimage.sh, base $BASE_KEY)" \
  "$BASE_TAR"
common=(--no-history --created "$CREATED" --architecture "$ARCH" --os linux --config.env "$PATH_ENV")

umoci raw add-layer --image "$L:base" --tag babelfish --history.created "$CREATED" \
  --history.created_by "COPY babelfish /usr/local/bin/babelfish (go build -trimpath -ldflags \"-s -w\" ./cmd/babelfish)" "$WORK/bf.tar"
labels=(--config.label "org.opencontainers.image.title=babelfish" --config.label "org.opencontainers.image.revision=$REVISION"
  --config.label "org.opencontainers.image.version=$TAG")
[[ -z "$SOURCE_URL" ]] || labels+=(--config.label "org.opencontainers.image.source=$SOURCE_URL")
umoci config --image "$L:babelfish" "${common[@]}" --config.user 65532:65532 \
  --config.entrypoint /usr/local/bin/babelfish --config.cmd=--help "${labels[@]}"

[[ -n "$MINIO_MISSING" ]] || umoci raw add-layer --image "$L:base" --tag minio --history.created "$CREATED" \
  --history.created_by "COPY minio /usr/bin/minio (github.com/minio/minio@$MINIO_VERSION), user 1000 minio" "$WORK/mn.tar"
[[ -n "$MINIO_MISSING" ]] || umoci config --image "$L:minio" "${common[@]}" --config.user 1000:1000 --config.entrypoint /usr/bin/minio \
  --config.label "org.opencontainers.image.title=minio" --config.label "org.opencontainers.image.version=$MINIO_VERSION"

umoci new --image "$L:pause"
umoci raw add-layer --image "$L:pause" --history.created "$CREATED" \
  --history.created_by "gcc -Os -static build/pause/linux/pause.c (k8s.io/kubernetes@$KUBE_VERSION)" "$WORK/pause.tar"
umoci config --image "$L:pause" --no-history --created "$CREATED" --architecture "$ARCH" --os linux \
  --config.user 65535:65535 --config.entrypoint /pause \
  --config.label "org.opencontainers.image.title=pause" --config.label "org.opencontainers.image.version=${PAUSE_TAG:-3.10}"

# archive TAGINLAYOUT NAME FILE: one image's layout, its index naming it, as
# a tar in OUTDIR.
archive() {
  local tag=$1 name=$2 file=$3 d="$WORK/out-$1" desc digest size
  cp -a "$L" "$d"
  desc=$(tr -d '\n' <"$d/index.json" | grep -o "{[^{}]*\"annotations\": *{[^{}]*\"org.opencontainers.image.ref.name\": *\"$tag\"[^{}]*}[^{}]*}")
  digest=$(grep -o '"digest": *"sha256:[0-9a-f]*"' <<<"$desc" | grep -o 'sha256:[0-9a-f]*')
  size=$(grep -o '"size": *[0-9]*' <<<"$desc" | grep -o '[0-9]*$')
  [[ -n "$digest" && -n "$size" ]] || die "umoci's index.json has no manifest tagged $tag"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}\n' \
    "$digest" "$size" "$name" "${name##*:}" >"$d/index.json"
  umoci gc --layout "$d"
  tar -C "$d" -cf "$OUTDIR/.$file.tmp" --sort=name --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner --mode=a+r,u+w,go-w oci-layout index.json blobs
  mv "$OUTDIR/.$file.tmp" "$OUTDIR/$file"
  log "$OUTDIR/$file: $name, manifest $digest, $(du -m "$OUTDIR/$file" | cut -f1) MiB"
}
archive babelfish "$BABELFISH_NAME" babelfish.oci.tar
[[ -n "$MINIO_MISSING" ]] || archive minio "$MINIO_NAME" minio.oci.tar
archive pause "$PAUSE_NAME" pause.oci.tar
[[ -z "$MINIO_MISSING" ]] || die "$MINIO_MISSING"
log "done in $((SECONDS - start))s; import with: ctr -n k8s.io images import $OUTDIR/<name>.oci.tar"
