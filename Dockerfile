# authmilter as a sidecar next to the MTA: a static binary in a minimal
# image, running as a non-root user. See docs/operations.md#docker.
#   docker build -t authmilter --build-arg VERSION=$(git describe --always) .
#   docker run -d --name authmilter -p 127.0.0.1:8893:8893 \
#     -v ./authmilter.toml:/etc/authmilter/authmilter.toml:ro \
#     -v authmilter-state:/var/lib/authmilter authmilter

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
# The same build command CI runs (scripts/test-all): CGO_ENABLED=0, -trimpath.
RUN VERSION="$VERSION" ./scripts/build /out/authmilter \
    && /out/authmilter check-config dist/docker/authmilter.toml \
    && mkdir -p /out/state /out/run

# distroless "static": CA certificates, /etc/passwd with the nonroot user
# (65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authmilter /usr/local/bin/authmilter
COPY dist/docker/authmilter.toml /etc/authmilter/authmilter.toml
COPY config.example.toml /etc/authmilter/authmilter.toml.example
# The store (SQLite records, spool) and the directory for a unix socket
# shared with the MTA container, owned by the runtime user.
COPY --from=build --chown=65532:65532 /out/state /var/lib/authmilter
COPY --from=build --chown=65532:65532 /out/run /run/authmilter
# store.dir defaults to $STATE_DIRECTORY.
ENV STATE_DIRECTORY=/var/lib/authmilter
USER 65532:65532
VOLUME ["/var/lib/authmilter"]
EXPOSE 8893
# The milter answers the option negotiation on its first listen socket.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/authmilter", "healthcheck", "-config", "/etc/authmilter/authmilter.toml", "-timeout", "5s"]
ENTRYPOINT ["/usr/local/bin/authmilter"]
CMD ["serve", "-config", "/etc/authmilter/authmilter.toml"]
