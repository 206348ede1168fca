# The one Babelfish image: every role (scheduler, serve, gpu-agent, trainer,
# dataset build) is a subcommand of /usr/local/bin/babelfish. Build it with
# `make image`; it needs no BuildKit feature, so the classic builder works too.
#
# go-nvml reaches NVML through cgo (dlopen of libnvidia-ml.so, which the
# NVIDIA container runtime mounts into the gpu-agent's container), so the
# binary is built with cgo against the same Debian release it runs on.

ARG GO_VERSION=1.26
ARG DEBIAN_RELEASE=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
# The module proxy and checksum database the build may use; `make image`
# passes the host's `go env` values. Empty: Go's defaults.
ARG GOPROXY
ARG GOSUMDB
ENV CGO_ENABLED=1 GOTOOLCHAIN=local
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -ldflags "-s -w" -o /out/babelfish ./cmd/babelfish \
 && /out/babelfish --help >/dev/null

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# espeak-ng speaks the corpus and unicode-cldr-core holds its phrases, for
# `babelfish dataset build` jobs; nothing else of the tools cache is needed
# at run time. ca-certificates: TLS to an external object store.
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng unicode-cldr-core ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 babelfish \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin babelfish
COPY --from=build /out/babelfish /usr/local/bin/babelfish
# The chart's pods run as 65532 too (the gpu-agent alone as root, for the
# kubelet's pod-resources socket) with a read-only root filesystem.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/babelfish"]
CMD ["--help"]
