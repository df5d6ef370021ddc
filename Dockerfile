# The `loom` binary as an image: the chart's default (ghcr.io/loom-gateway/loom), run as
# `loom controller`, `loom data-plane` or `loom serve`.
#
#   docker build --build-arg LOOM_GIT_REV=$(git rev-parse --short=12 HEAD) -t loom .
#
# The build stage compiles with the pinned toolchain (rust-toolchain.toml, Rust 1.95) and
# Cargo.lock; the runtime stage is distroless (glibc, CA certificates, no shell), non-root
# (65532), and needs no writable filesystem (readOnlyRootFilesystem works).

FROM docker.io/library/rust:1.95-bookworm AS build
# cmake: Pingora's zlib-ng.
RUN apt-get update && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG LOOM_GIT_REV=unknown
RUN LOOM_GIT_REV=$LOOM_GIT_REV cargo build --release --locked -p loom-cli \
    && cp target/release/loom /loom

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /loom /usr/local/bin/loom
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/loom"]
CMD ["--help"]
