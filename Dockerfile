# fctrace: collector, invoke gateway, query API and UI in one image.
# Build: docker build -t fctrace .   (RocksDB's C++ makes the first build slow)

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY thrift thrift
COPY ui ui
COPY src src
RUN cargo build --release --locked --bin fctrace \
 && cp target/release/fctrace /usr/local/bin/fctrace

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/fctrace --shell /usr/sbin/nologin fctrace \
 && mkdir -p /var/lib/fctrace \
 && chown fctrace:fctrace /var/lib/fctrace
COPY --from=build /usr/local/bin/fctrace /usr/local/bin/fctrace
USER fctrace
VOLUME ["/var/lib/fctrace"]
# collector (Jaeger thrift), OTLP/HTTP, OTLP/gRPC, query+UI, remote sampling, invoke gateway
EXPOSE 14268 4318 4317 16686 5778 8000 14250 9411 6831/udp 6832/udp
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:16686/healthz || exit 1
ENTRYPOINT ["fctrace", "serve", "--listen-all", "--data-dir", "/var/lib/fctrace"]
