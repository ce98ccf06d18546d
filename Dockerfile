# syntax=docker/dockerfile:1
# The Headway image for people who have Docker: `docker build -t headway .`
# `cargo xtask image` builds the same image with no container runtime (see docs/decisions.md).
# Every stage is pinned by version; the final image has no shell, no libraries, and runs as
# the non-root user 65532.

# A statically linked headway (musl; git2's OpenSSL is vendored for this target).
FROM rust:1.95-bookworm AS headway
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
ARG HEADWAY_GIT_COMMIT=unknown
ENV HEADWAY_GIT_COMMIT=${HEADWAY_GIT_COMMIT}
RUN cargo build --locked --release --target x86_64-unknown-linux-musl -p headway \
    && cp target/x86_64-unknown-linux-musl/release/headway /headway

# helm and kustomize, static (CGO_ENABLED=0), the versions `cargo xtask cluster build` pins.
FROM golang:1.25-bookworm AS tools
ENV CGO_ENABLED=0 GOBIN=/out
RUN go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v3.22.0 -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
        helm.sh/helm/v3/cmd/helm@v3.22.0 \
    && go install -ldflags "-s -w -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/v5.8.1" \
        sigs.k8s.io/kustomize/kustomize/v5@v5.8.1

# passwd, group and CA certificates for the final image.
FROM debian:bookworm-slim AS files
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && mkdir -p /out/etc/ssl/certs /out/tmp /out/home/nonroot \
    && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
    && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /out/etc/passwd \
    && printf 'root:x:0:\nnonroot:x:65532:\n' > /out/etc/group \
    && chmod 1777 /out/tmp

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.source="https://github.com/headway-dev/headway" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.title="headway"
COPY --from=files /out/ /
COPY --from=headway /headway /usr/local/bin/headway
COPY --from=tools /out/helm /out/kustomize /usr/local/bin/
ENV HOME=/tmp PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/headway"]
CMD ["controller"]
