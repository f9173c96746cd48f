# Build: docker build -t gatewatch .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/gatewatch

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 gatewatch
COPY --from=build /src/target/release/gatewatch /usr/local/bin/gatewatch
COPY detectors /etc/gatewatch/detectors
USER gatewatch
EXPOSE 9977
ENTRYPOINT ["gatewatch"]
CMD ["run", "--config", "/etc/gatewatch/gatewatch.toml"]
