# Build: docker build -t gatewatch .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/gatewatch

FROM debian:bookworm-slim
# librdkafka is linked against OpenSSL and zlib; TLS to brokers, sinks and IdPs needs the CA bundle.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 gatewatch \
    && mkdir -p /var/lib/gatewatch && chown gatewatch /var/lib/gatewatch
# Alert queues and the dead-letter file (a volume in docker-compose.yml): the named volume
# takes this directory's owner, so the service can write there.
VOLUME /var/lib/gatewatch
COPY --from=build /src/target/release/gatewatch /usr/local/bin/gatewatch
COPY detectors /etc/gatewatch/detectors
COPY rules /etc/gatewatch/rules
COPY gatewatch.toml /etc/gatewatch/gatewatch.toml
USER gatewatch
EXPOSE 9977
ENTRYPOINT ["gatewatch"]
CMD ["run", "--config", "/etc/gatewatch/gatewatch.toml"]
