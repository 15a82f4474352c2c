# syntax=docker/dockerfile:1
#
# One image for every command of liveupdate-operator: `controller` and `update-server` (and the `liveupdate` CLI at
# /app/dist/cli/main.js). See docs/adr/0006-shipping-image-chart-manifests.md.
#
#   docker build -t liveupdate-operator:dev .
#   docker build --build-arg NODE_IMAGE=registry.internal/mirror/node:24-bookworm-slim@sha256:<digest> .
#
# NODE_IMAGE pins the Node.js 24 base by digest. The digest below is the node:24-bookworm-slim (24.18.0) index digest
# as referenced by public repositories; it was NOT resolved against Docker Hub from the machine that wrote this file
# (no registry access there). Refresh it before a release:
#   docker buildx imagetools inspect docker.io/library/node:24-bookworm-slim --format '{{json .Manifest.Digest}}'
# Mirrors override the whole reference with --build-arg NODE_IMAGE=... (keep a digest in it).
ARG NODE_IMAGE=docker.io/library/node:24-bookworm-slim@sha256:6f7b03f7c2c8e2e784dcf9295400527b9b1270fd37b7e9a7285cf83b6951452d

# ---- build: full dependency tree, compile, then drop dev dependencies --------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json ./
# --ignore-scripts: only dev dependencies have install scripts (the `node` package would download a second Node
# binary, esbuild and node-pty fetch or build native parts), and `tsc` needs none of them. A production dependency
# that needed its install script would fail the image tests, which start the built image.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# `npm run build` writes dist/, which is exactly what the runtime stage copies (tested by
# test/integration/chart/entrypoint.test.ts, which starts that output with node).
# npm prune leaves the emptied scope folders of dev dependencies (@babel, @jest, …) behind: drop them.
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts \
 && rm -rf node_modules/.cache \
 && find node_modules -mindepth 1 -maxdepth 1 -type d -empty -delete

# ---- runtime: Node 24 slim, production dependencies only, fixed non-root uid ---------------------------------------
FROM ${NODE_IMAGE} AS runtime
ARG NODE_IMAGE
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="liveupdate-operator" \
      org.opencontainers.image.description="Self-hosted over-the-air live updates for Capacitor apps (Capgo protocol), run the Kubernetes way: controller and update server" \
      org.opencontainers.image.source="https://github.com/liveupdate-dev/liveupdate-operator" \
      org.opencontainers.image.url="https://github.com/liveupdate-dev/liveupdate-operator" \
      org.opencontainers.image.documentation="https://github.com/liveupdate-dev/liveupdate-operator/tree/main/charts/liveupdate-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="liveupdate-operator authors" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"

# The runtime needs node only: remove npm, npx, corepack and yarn (smaller image, fewer scanner findings). Name the
# runtime uid/gid 65532 "nonroot" (the distroless convention) for tools that look the user up.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && echo 'nonroot:x:65532:' >> /etc/group \
 && echo 'nonroot:x:65532:65532:nonroot:/tmp:/usr/sbin/nologin' >> /etc/passwd

WORKDIR /app
# Owned by root and not writable by the runtime uid: the code cannot be modified at run time even without a
# read-only root filesystem.
COPY --from=build --chown=0:0 /src/package.json ./package.json
COPY --from=build --chown=0:0 /src/node_modules ./node_modules
COPY --from=build --chown=0:0 /src/dist ./dist

# Only /tmp is written at run time (an emptyDir in the chart); HOME points there for libraries that want one.
ENV NODE_ENV=production \
    HOME=/tmp \
    TMPDIR=/tmp
# Fixed numeric uid/gid (the "nonroot" convention of distroless images) so runAsNonRoot can verify it.
USER 65532:65532
# 8080: device API of update-server; 8081: /healthz, /readyz, /metrics of both commands.
EXPOSE 8080 8081
ENTRYPOINT ["node", "/app/dist/main.js"]
CMD ["--help"]
