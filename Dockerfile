# syntax=docker/dockerfile:1
# Cellgate image: `cellgate` (gateway, echo-cell, demo, check-config) and `cellctl`.
#
#   docker build -t cellgate:local .
#   docker run --rm -p 8080:8080 cellgate:local demo --listen 0.0.0.0:8080   # see `cellgate demo --help`
#   docker compose up                                                        # the full local stack
#
# The build stage compiles with the toolchain of the workspace (rust-version 1.86, edition 2024);
# the runtime stage is debian-slim with only the two binaries, CA certificates and curl (for
# the HEALTHCHECK), running as an unprivileged user. It builds the plain release profile;
# `deploy/pgo-build.sh` builds a profile-guided binary (a cheaper request path, README
# "Benchmark"), which needs a training run the image build does not do.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Manifests and sources of every workspace member: cargo resolves the whole workspace even
# when building two packages.
COPY Cargo.toml Cargo.lock ./
COPY cell-router cell-router
COPY ratelimit ratelimit
COPY gateway gateway
COPY cellctl cellctl
COPY test-support test-support
# The registry and target caches survive between builds (BuildKit); the binaries are copied
# out of the cache mount so the next stage can see them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway -p cellctl \
 && mkdir -p /out \
 && cp target/release/cellgate target/release/cellctl /out/

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cellgate \
 && useradd --system --uid 10001 --gid cellgate --home-dir /var/lib/cellgate --shell /usr/sbin/nologin cellgate \
 && mkdir -p /etc/cellgate /var/lib/cellgate \
 && chown cellgate:cellgate /var/lib/cellgate
COPY --from=build /out/cellgate /out/cellctl /usr/local/bin/
USER cellgate:cellgate
WORKDIR /var/lib/cellgate
ENV CELLGATE_LOG_FORMAT=json
# 8080: data plane; 9901: admin API (/healthz, /readyz, /metrics, /admin/*).
EXPOSE 8080 9901
# Readiness, not liveness: /readyz turns 503 while the gateway shuts down. Services that run
# another subcommand (echo-cell) override this check in docker-compose.yml.
HEALTHCHECK --interval=5s --timeout=2s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9901/readyz || exit 1
ENTRYPOINT ["cellgate"]
CMD ["serve", "--config", "/etc/cellgate/cellgate.toml"]
