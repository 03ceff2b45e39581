# The operator's image: its binary, the shared libraries it links and nothing else, running as
# 65532 (nonroot), every file read-only to it (readOnlyRootFilesystem works unchanged).
#
#   docker build -t bucketwire:0.1.0 .
#
# `make image` builds the same image without Docker (scripts/image-oci.py): it runs this file's
# build-stage commands on the host and takes the runtime configuration (USER, ENTRYPOINT, CMD,
# LABEL) from the final stage below, so the final stage may hold only those instructions.
# tests/dockerfile.rs checks that the two agree.
#
# The base image is pinned by its exact version tag. It is not pinned by digest: the project is
# built where no registry is reachable, so no digest could be looked up or checked
# (docs/decisions.md). Append "@sha256:..." after you verify it if you need the stronger pin.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo reads every target the manifest declares, the bench included, before building one.
COPY benches ./benches
COPY scripts/image-rootfs.sh ./scripts/image-rootfs.sh
RUN cargo build --release --locked --bin bucketwire
# The binary, exactly the libraries ldd reports (glibc's, from this Debian release), the CA
# bundle, /etc/passwd and /etc/group with nonroot.
RUN scripts/image-rootfs.sh target/release/bucketwire /rootfs

FROM scratch
COPY --from=build /rootfs/ /
LABEL org.opencontainers.image.title="bucketwire" \
      org.opencontainers.image.description="Kubernetes operator that wires Milvus to its S3 bucket through IAM (IRSA), with no static keys" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
ENTRYPOINT ["/bucketwire"]
CMD ["run"]
