# firesfu: one image, one entrypoint for every subcommand (broadcast, sidecar, monitor).
#
#   docker build -t firesfu .                      # from a clean checkout (the documented way)
#   docker build --target runtime-prebuilt -t firesfu CONTEXT
#       # the same runtime stage from artefacts built elsewhere: CONTEXT holds
#       # prebuilt/firesfu (the binary) and prebuilt/web/ (web/dist); tests/deploy/image.sh does this
#
# Base images are arguments so that an air-gapped or mirrored build can substitute its own
# (tests/deploy/image.sh uses a Debian bookworm base made locally with debootstrap).
# The runtime image runs as the numeric user 65532 (distroless "nonroot"), needs no writable
# path (readOnlyRootFilesystem works), and has no shell.
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK: Kubernetes probes /healthz and /readyz (k8s/); the distroless runtime has no shell or curl to run one
# checkov:skip=CKV_DOCKER_7: base images are pinned by tag through build arguments (BUILDER_IMAGE, NODE_IMAGE, RUNTIME_IMAGE); pin digests with --build-arg in release builds
ARG BUILDER_IMAGE=docker.io/library/rust:1.90-bookworm
ARG NODE_IMAGE=docker.io/library/node:20-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# --- the release binary -------------------------------------------------------------------
FROM ${BUILDER_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what `cargo build --bin firesfu` reads (the workspace's member manifests included).
COPY Cargo.toml Cargo.lock build.rs ./
COPY crates crates
COPY proto proto
COPY migrations migrations
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin firesfu \
 && mkdir -p /out \
 && objcopy --strip-debug target/release/firesfu /out/firesfu

# --- the web app (web/dist) -----------------------------------------------------------------
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
# The smoke-test page is a test fixture, not part of the product.
RUN node build.mjs && rm -f dist/smoke.html dist/smoke.js dist/smoke.js.map

# --- runtime from prebuilt artefacts (--target runtime-prebuilt; see the top) ----------------
FROM ${RUNTIME_IMAGE} AS runtime-prebuilt
ARG PREBUILT=prebuilt
COPY ${PREBUILT}/firesfu /usr/local/bin/firesfu
COPY ${PREBUILT}/web/ /usr/share/firesfu/web/
ENV FIRESFU_WEB_ROOT=/usr/share/firesfu/web
USER 65532:65532
WORKDIR /
# 8080: HTTP (APP_PORT: /healthz, the sidecar's API and web app); 4443: media (broadcast).
EXPOSE 8080/tcp 4443/udp 4443/tcp
ENTRYPOINT ["/usr/local/bin/firesfu"]
CMD ["--help"]

# --- runtime from the stages above: the default target (the last stage) ---------------------
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/firesfu /usr/local/bin/firesfu
COPY --from=web /web/dist/ /usr/share/firesfu/web/
ENV FIRESFU_WEB_ROOT=/usr/share/firesfu/web
USER 65532:65532
WORKDIR /
EXPOSE 8080/tcp 4443/udp 4443/tcp
ENTRYPOINT ["/usr/local/bin/firesfu"]
CMD ["--help"]
