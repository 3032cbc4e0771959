# syntax=docker/dockerfile:1
# The image of vk8s for those with a container engine (docker buildx, podman, buildah). `make
# image` builds the same image without one (hack/image, docs/image.md): the static binary at
# /vk8s, the LICENSE at /licenses/LICENSE, no base image, user 65532, the OCI labels.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) \
#     -t ghcr.io/vk8s-io/vk8s:$(git describe --tags --always --dirty) .

# The compiler runs on the build machine and cross-compiles for the target (no emulation).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# As hack/image builds it: static, no build paths, no VCS stamp (the revision is a label),
# Go's default microarchitecture levels.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOAMD64=v1 GOARM64=v8.0 \
	go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/vk8s ./cmd/vk8s

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="vk8s" \
	org.opencontainers.image.description="vk8s federates Kubernetes sites into one host cluster (virtual-kubelet provider, admission webhook)" \
	org.opencontainers.image.source="https://github.com/vk8s-io/vk8s" \
	org.opencontainers.image.version="${VERSION}" \
	org.opencontainers.image.revision="${REVISION}" \
	org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build --chmod=0644 /src/LICENSE /licenses/LICENSE
COPY --from=build --chmod=0755 /out/vk8s /vk8s
# distroless' nonroot, as numbers: there is no /etc/passwd, and the kubelet checks
# runAsNonRoot against a number.
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/vk8s"]
