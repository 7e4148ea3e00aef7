# syntax=docker/dockerfile:1
#
# The ArqonBus container image: `docker build -t arqonbus:0.1.0 .`
#
# build     compiles the release binary (the project's own [profile.release]: no debug info, the
#           symbol table kept); the dependencies are compiled in a layer of their own that only
#           Cargo.toml / Cargo.lock invalidate.
# profiling the same build with line-level debug info ([profile.profiling]), for profilers and
#           debuggers: `docker build --target profiling --output type=local,dest=out .`
# runtime   distroless (glibc + libgcc, no shell, no package manager), UID/GID 65532, the
#           binary and nothing else. No HEALTHCHECK: Kubernetes probes /healthz and /readyz.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Dependency layer: the manifest, the lock file and stub sources. Rebuilt only when the
# manifest or the lock file change; source edits reuse it.
COPY Cargo.toml Cargo.lock ./
COPY bench/Cargo.toml ./bench/
RUN mkdir -p src bench/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs bench/src/lib.rs \
 && cargo build --release --locked --bin arqonbus \
 && rm -rf src bench/src
# The real sources (the gateway, and the load driver behind `arqonbus bench`). COPY keeps
# their modification times, which can be older than the stub build: touching the crate roots
# makes cargo rebuild the crates themselves.
COPY src ./src
COPY bench/src ./bench/src
RUN touch src/main.rs src/lib.rs bench/src/lib.rs \
 && cargo build --release --locked --bin arqonbus \
 && mkdir -p /out \
 && cp target/release/arqonbus /out/arqonbus \
 && /out/arqonbus --version

FROM build AS profiling-build
RUN cargo build --profile profiling --locked --bin arqonbus

FROM scratch AS profiling
COPY --from=profiling-build /src/target/profiling/arqonbus /arqonbus

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="arqonbus" \
      org.opencontainers.image.description="A small, sharp, reliable WebSocket message bus" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/arqonbus /usr/local/bin/arqonbus
# distroless's "nonroot" user, by number so that runAsNonRoot can verify it.
USER 65532:65532
WORKDIR /home/nonroot
# HTTP and WebSocket share one port; listen on every interface inside a container. An
# environment variable outranks the TOML file: change the address with this variable.
ENV ARQONBUS_SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/arqonbus"]
CMD ["serve"]
