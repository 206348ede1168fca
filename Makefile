# Babelfish: the two commands a newcomer needs are `make demo` (issue 8) and
# `make test`. Everything they need is installed by `make tools`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
TOOLS := $(shell scripts/bootstrap.sh --print-dir)
export PATH := $(TOOLS)/bin:$(PATH)
GOTEST_FLAGS ?= -race -timeout 30m
FUZZTIME ?= 60s

.PHONY: all tools build test vet lint proto proto-check crds crds-check fuzz bench help demo image oci-image cluster cluster-clean

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

tools: ## obtain the real parts (MinIO, kube-apiserver, etcd, Helm, protoc, espeak-ng, ...) into the tools cache
	scripts/bootstrap.sh

build: ## build the babelfish binary into bin/
	go build -o bin/babelfish ./cmd/babelfish

vet: ## go vet and staticcheck
	go vet ./...
	staticcheck ./...

proto: tools ## regenerate the Go code of the protos under api/
	scripts/genproto.sh

proto-check: proto ## fail if the committed generated code is not current
	@git diff --exit-code -- api/ >/dev/null || { echo "generated proto code is stale: run make proto and commit"; git diff --stat -- api/; exit 1; }

crds: tools ## regenerate CRDs (charts/babelfish/crds) and deepcopy (api/v1alpha1) from the Go types
	scripts/gencrd.sh

crds-check: crds ## fail if the committed CRDs or deepcopy are stale
	@git diff --exit-code -- api/v1alpha1 charts/babelfish/crds >/dev/null || { echo "generated CRDs are stale: run make crds and commit"; git diff --stat -- api/v1alpha1 charts/babelfish/crds; exit 1; }

test: tools vet proto-check crds-check ## the test command: bootstrap, vet, staticcheck, go test -race on everything
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go test $(GOTEST_FLAGS) ./...

fuzz: ## run the fuzzers for FUZZTIME each (default 60s)
	go test ./audio -run '^$$' -fuzz FuzzReadWAV -fuzztime $(FUZZTIME)
	go test ./dataset/shard -run '^$$' -fuzz FuzzReader -fuzztime $(FUZZTIME)

demo: ## the whole pipeline on this machine: up, corpus, 2-rank training, promote, translate -> out.wav
	scripts/demo.sh

bench: ## run every benchmark with its defaults
	for b in bench/*/; do go run ./$$b; done

# The build uses the host network and the host's module proxy, so it
# downloads modules the way this machine does.
IMAGE ?= babelfish/babelfish:dev
image: ## build the container image IMAGE (default babelfish/babelfish:dev) from the Dockerfile with docker
	@command -v docker >/dev/null || { echo "make image: docker is not installed, so the image was not built; install docker (or build the Dockerfile with another OCI builder) and run make image again" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make image: docker is installed but its daemon does not answer (docker info failed), so the image was not built" >&2; exit 1; }
	docker build --network=host --build-arg GOPROXY="$$(go env GOPROXY 2>/dev/null)" --build-arg GOSUMDB="$$(go env GOSUMDB 2>/dev/null)" -t $(IMAGE) .

# No daemon, no registry: the same content as the Dockerfile, assembled with
# mmdebstrap and umoci into OCI archives that containerd imports.
OCI_DIR ?= $(dir $(TOOLS))images
oci-image: tools ## build the babelfish, minio and pause images as OCI archives into OCI_DIR (no docker needed)
	scripts/ociimage.sh --tag dev $(OCI_DIR)

cluster: tools ## start the real single-node Kubernetes cluster with the images imported; prints KUBECONFIG; Ctrl-C stops it
	go run ./internal/kube/kubeup

cluster-clean: ## remove what a cluster that was not stopped (a crash, kill -9) left on this machine
	go run ./internal/kube/kubeup --clean
