# syntax=docker/dockerfile:1
# switchyard image: `docker build -t switchyard .`, then `docker run switchyard --pool-name ...` runs the EPP;
# `--entrypoint node switchyard /app/dist/cli.js sim ...` (or `command:` in Kubernetes) runs another subcommand.

# ---- build: full dependency tree, compile TypeScript -----------------------------------------------------------
FROM node:22-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the "prepare" script compiles the sources, which are not copied yet (we build explicitly below).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY proto ./proto
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies only, non-root -----------------------------------------------------------
FROM node:22-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: "prepare" would run tsc, which is a dev dependency and not installed here.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY proto ./proto
# The node image's unprivileged user; numeric so Kubernetes runAsNonRoot can verify it.
USER 1000:1000
# ext_proc gRPC, gRPC health, Prometheus metrics (GIE defaults).
EXPOSE 9002 9003 9090
ENTRYPOINT ["node", "/app/dist/cli.js", "epp"]
