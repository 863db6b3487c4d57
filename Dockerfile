# credseal as a static (musl) binary in an empty image, running as UID 65532.
# Build: docker build -t ghcr.io/credseal/credseal:0.1.0 .
FROM rust:1.95-alpine3.22 AS build
RUN apk add --no-cache musl-dev ca-certificates
WORKDIR /src
COPY . .
# Static, non-PIE and size-optimised: the sidecar's resident memory is mostly the binary's pages.
ENV RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
    CARGO_PROFILE_RELEASE_PANIC=abort
RUN cargo build --release --locked --bin credseal

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/release/credseal /credseal
USER 65532:65532
ENTRYPOINT ["/credseal"]
