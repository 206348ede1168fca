#!/usr/bin/env bash
# bootstrap.sh obtains the real parts Babelfish's tests and `babelfish up` run
# against, idempotently, into a tools cache outside the repository:
#
#   $BABELFISH_TOOLS (default $HOME/.cache/babelfish/tools)
#     bin/       minio, etcd, kube-apiserver, kube-controller-manager,
#                kube-scheduler, kubelet, kube-proxy, kubectl, coredns, helm,
#                protoc-gen-go, protoc-gen-go-grpc, staticcheck, controller-gen
#     stamps/    one file per tool and pinned version: present means built
#     src/       scratch modules used to build the Kubernetes parts and etcd
#
# Go tools are built from the Go module proxy at pinned versions; Debian
# packages come from apt when missing: espeak-ng, CLDR data, protoc, sox,
# chromium, and for the real single-node cluster (internal/kube) containerd,
# runc, the CNI plugins, iptables and conntrack, with mmdebstrap and umoci to
# assemble its images (scripts/ociimage.sh).
# A warm run only checks stamps and dpkg, and takes a second or two.
#
# Usage: scripts/bootstrap.sh [--print-dir]
set -euo pipefail

TOOLS="${BABELFISH_TOOLS:-$HOME/.cache/babelfish/tools}"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$TOOLS"; exit 0; fi

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
KUBE_VERSION=v1.37.2
KUBE_STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.6.5
HELM_VERSION=v3.19.2
PROTOC_GEN_GO_VERSION=v1.36.10
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1
STATICCHECK_VERSION=v0.7.0
CONTROLLER_GEN_VERSION=v0.22.0
COREDNS_VERSION=v1.15.0
APT_PACKAGES=(espeak-ng unicode-cldr-core protobuf-compiler sox chromium
  containerd runc containernetworking-plugins iptables conntrack iproute2 mmdebstrap umoci)
# The Kubernetes commands built from one scratch module, each with its stamp.
KUBE_CMDS=(kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler kube-proxy)

mkdir -p "$TOOLS/bin" "$TOOLS/stamps" "$TOOLS/src"
start=$(date +%s)
log() { printf 'bootstrap: %s\n' "$*"; }

# have NAME VERSION: true when NAME at VERSION was built before and still exists.
have() { [[ -f "$TOOLS/stamps/$1@$2" && -x "$TOOLS/bin/$1" ]]; }
stamp() { rm -f "$TOOLS/stamps/$1@"*; touch "$TOOLS/stamps/$1@$2"; }

# goinstall NAME PKG@VERSION: `go install` into the cache.
goinstall() {
  local name=$1 pkg=$2 version=${2##*@}
  if have "$name" "$version"; then log "$name $version: cached"; return; fi
  log "$name $version: building from the module proxy (minutes on a cold cache)"
  GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install "$pkg"
  stamp "$name" "$version"
  log "$name $version: built"
}

apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then log "debian packages (${APT_PACKAGES[*]}): installed"; return; fi
  log "installing debian packages: ${missing[*]}"
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  log "debian packages installed: ${missing[*]}"
}

# kube: the Kubernetes commands need a module that requires k8s.io/kubernetes
# and pins each staging module (replaced by ./staging paths in its own go.mod).
# Each command has its own stamp, so adding one builds only that one.
kube() {
  local todo=()
  for c in "${KUBE_CMDS[@]}"; do have "$c" "$KUBE_VERSION" || todo+=("$c"); done
  if ((${#todo[@]} == 0)); then log "${KUBE_CMDS[*]} $KUBE_VERSION: cached"; return; fi
  log "${todo[*]} $KUBE_VERSION: building (about 8 minutes for all on a cold cache)"
  local dir="$TOOLS/src/kubernetes-$KUBE_VERSION"
  mkdir -p "$dir"
  local gomod
  gomod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module babelfish.local/kubetools"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk -v v="$KUBE_STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } >"$dir/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for c in "${KUBE_CMDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } >"$dir/tools.go"
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local ldflags="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
  for c in "${todo[@]}"; do
    log "$c $KUBE_VERSION: building"
    (cd "$dir" && GOFLAGS=-mod=mod go build -ldflags "$ldflags" -o "$TOOLS/bin/$c" "k8s.io/kubernetes/cmd/$c")
    stamp "$c" "$KUBE_VERSION"
  done
  log "${todo[*]} $KUBE_VERSION: built"
}

# etcd refuses `go install` (replace lines in its go.mod): build it from a
# scratch module pinning its sibling modules.
etcd() {
  if have etcd "$ETCD_VERSION"; then log "etcd $ETCD_VERSION: cached"; return; fi
  log "etcd $ETCD_VERSION: building (about a minute on a cold cache)"
  local dir="$TOOLS/src/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<GOMOD
module babelfish.local/etcdtools

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
GOMOD
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$dir" && GOFLAGS=-mod=mod go build -o "$TOOLS/bin/etcd" go.etcd.io/etcd/server/v3)
  stamp etcd "$ETCD_VERSION"
  log "etcd $ETCD_VERSION: built"
}

apt_packages
goinstall protoc-gen-go "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
goinstall protoc-gen-go-grpc "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
goinstall staticcheck "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
goinstall controller-gen "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION"
goinstall helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
etcd
goinstall minio "github.com/minio/minio@$MINIO_VERSION"
kube
goinstall coredns "github.com/coredns/coredns@$COREDNS_VERSION"

log "tools in $TOOLS/bin ready in $(( $(date +%s) - start ))s"
