# authmilter as a sidecar next to the MTA. Build: docker build -t authmilter .
# Run:   docker run -p 8893:8893 -v /etc/authmilter:/etc/authmilter:ro authmilter
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/authmilter ./cmd/authmilter

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin authmilter
COPY --from=build /out/authmilter /usr/local/bin/authmilter
COPY config.example.toml /etc/authmilter/authmilter.toml.example
USER authmilter
EXPOSE 8893
# In a container the milter must listen on all interfaces: mount a config
# with listen = ["inet:0.0.0.0:8893"] (or a unix socket on a shared volume).
ENTRYPOINT ["/usr/local/bin/authmilter"]
CMD ["serve", "-config", "/etc/authmilter/authmilter.toml"]
