# syntax=docker/dockerfile:1
#
# gitstore-api container image.
#
#   docker build -t gitstore-api .            (or: docker compose up --build)
#
# Three stages: `assets` installs the pinned GraphiQL bundle, `build` compiles the release binary
# with that bundle embedded (so /playground needs no internet), and the runtime stage is a
# distroless image running as an unprivileged user. The compile command is the one `.ci/run` uses,
# so CI proves this build; tests/it/deploy.rs keeps the two identical.

ARG RUST_VERSION=1.95
ARG NODE_VERSION=20

# --- GraphiQL browser files, exactly as assets/graphiql/package-lock.json pins them ---------------
FROM node:${NODE_VERSION}-bookworm-slim AS assets
WORKDIR /src/assets/graphiql
COPY assets/graphiql/package.json assets/graphiql/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# --- release binary --------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Dependencies first, against placeholder sources: this layer is rebuilt only when the manifest,
# the lock file, build.rs or the GraphiQL bundle change, not on every source edit. Every target the
# manifest declares needs a file, or cargo refuses to read it.
COPY Cargo.toml Cargo.lock build.rs ./
COPY assets/graphiql/package.json assets/graphiql/package-lock.json assets/graphiql/
COPY --from=assets /src/assets/graphiql/node_modules assets/graphiql/node_modules
RUN mkdir -p src tests/it benches/http migrations/sqlite \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs tests/it/main.rs \
 && echo 'fn main() {}' > benches/store.rs \
 && echo 'fn main() {}' > benches/http/main.rs \
 && GITSTORE_REQUIRE_OFFLINE_GRAPHIQL=1 cargo build --release --locked \
 && rm -rf src tests benches migrations

# The real sources. Cargo decides freshness by mtime, and copied files keep the mtimes they have
# in the build context, which can be older than the placeholder build: touch the crate roots so
# cargo recompiles this crate (and only this crate).
COPY src src
COPY migrations migrations
RUN mkdir -p tests/it benches/http \
 && touch tests/it/main.rs \
 && echo 'fn main() {}' > benches/store.rs \
 && echo 'fn main() {}' > benches/http/main.rs \
 && touch src/lib.rs src/main.rs \
 && GITSTORE_REQUIRE_OFFLINE_GRAPHIQL=1 cargo build --release --locked \
 && install -D -m 0755 target/release/gitstore-api /out/usr/local/bin/gitstore-api \
 && install -d -m 0755 /out/data

# --- runtime ---------------------------------------------------------------------------------------
# glibc, libgcc and CA certificates, no shell, no package manager; uid/gid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/gitstore-api /usr/local/bin/gitstore-api
# /data belongs to the unprivileged user, so a named volume mounted there (SQLite backend, see
# compose.yml) is writable; it is also the working directory, where the default
# GITSTORE_DATASTORE_SQLITE_PATH (gitstore.db) lands.
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
USER 65532:65532

ENV GITSTORE_API_PORT=4000
EXPOSE 4000

# The binary probes its own /health: the image has neither curl nor a shell.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/gitstore-api", "healthcheck"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gitstore-api"]
CMD ["serve"]
