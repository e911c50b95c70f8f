# syntax=docker/dockerfile:1
#
# The `coffer` binary (server and operator CLI) in a small image that runs as a non-root
# user. Build it from the repository root and push it where your cluster pulls from:
#
#   docker build -t registry.example.com/coffer:0.1.0 .
#   docker push registry.example.com/coffer:0.1.0
#
# then install the chart with --set server.image.repository=registry.example.com/coffer
# (helm/coffer/README.md). Both stages are Debian 12 (bookworm), so the binary's glibc
# matches the runtime's.

ARG RUST_VERSION=1.95

# ---- build: the release binary, from the committed Cargo.lock ----------------------------
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# Drop the debug line tables of the release profile (symbol names stay, for backtraces).
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p coffer --bin coffer \
 && install -D -m 0755 target/release/coffer /out/coffer

# ---- runtime: glibc and libgcc only, no shell, user nonroot (65532) ----------------------
FROM gcr.io/distroless/cc-debian12:nonroot
# Owned by root, executable by all: the non-root user cannot replace it.
COPY --from=build /out/coffer /usr/local/bin/coffer
# nonroot's home is /home/nonroot (the CLI keeps its token there). The chart mounts
# writable volumes for the Raft data (/coffer/data) and HOME (/home/coffer) and runs with
# a read-only root filesystem.
USER 65532:65532
# 8200: the API (Vault's port). 8201: the Raft cluster port (mutual TLS between members).
EXPOSE 8200 8201
ENTRYPOINT ["/usr/local/bin/coffer"]
# Like Vault's image, a bare `docker run` starts an in-memory dev server (unsealed, plain
# HTTP, root token printed in the log). The Helm chart always passes its own arguments:
#   server -config=/coffer/config/<pod>.hcl
CMD ["server", "-dev", "-dev-listen-address=0.0.0.0:8200"]
