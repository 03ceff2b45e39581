# A static, non-root image of the operator. Build: docker build -t bucketwire:0.1.0 .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools cmake \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo reads every target the manifest declares, the bench included, before building one.
COPY benches ./benches
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin bucketwire

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/bucketwire /bucketwire
USER 65532:65532
ENTRYPOINT ["/bucketwire"]
CMD ["run"]
