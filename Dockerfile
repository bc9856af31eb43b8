# authmilter as a sidecar next to the MTA: the static binary in an image
# FROM scratch (no shell, no package manager), running as the non-root
# user authmilter (65532). See docs/operations.md#docker.
#   docker build -t authmilter --build-arg VERSION=$(git describe --always) .
#   docker run -d --name authmilter --read-only -p 127.0.0.1:8893:8893 \
#     -v "$PWD/authmilter:/etc/authmilter:ro" \
#     -v authmilter-state:/var/lib/authmilter authmilter
# Without a registry (how CI builds it: integration/container_test.go), make
# the build stage's files on the host and hand them in as that stage; the
# Go image is then neither pulled nor run:
#   ./scripts/image-files .image/out
#   podman build --format docker --build-context build=.image -t authmilter .

# The build stage: /out holds what the runtime stage copies.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
# The same build command CI runs (scripts/build, called by the script).
RUN VERSION="$VERSION" ./scripts/image-files /out

FROM scratch
COPY --from=build /out/rootfs/ /
COPY dist/docker/authmilter.toml /etc/authmilter/authmilter.toml
COPY config.example.toml /etc/authmilter/authmilter.toml.example
# The store (SQLite records, spool) and the directory for a unix socket
# shared with the MTA container on a volume, owned by the runtime user.
COPY --from=build --chown=65532:65532 /out/empty /var/lib/authmilter
COPY --from=build --chown=65532:65532 /out/empty /run/authmilter
# store.dir defaults to $STATE_DIRECTORY.
ENV STATE_DIRECTORY=/var/lib/authmilter
USER 65532:65532
VOLUME ["/var/lib/authmilter"]
EXPOSE 8893
# The milter answers the option negotiation on its first listen socket.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/authmilter", "healthcheck", "-config", "/etc/authmilter/authmilter.toml", "-timeout", "5s"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/authmilter"]
CMD ["serve", "-config", "/etc/authmilter/authmilter.toml"]
