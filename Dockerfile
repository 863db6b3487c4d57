# credseal as a static (musl) binary in an empty image, running as UID 65532.
# Two images from one file:
#   docker build -t ghcr.io/credseal/credseal:0.1.0 .                                # every command
#   docker build --target sidecar -t ghcr.io/credseal/credseal:0.1.0-sidecar .       # materialize
# The sidecar image's binary is built without the cluster and database clients
# (--no-default-features): the same materialize, encrypt, decrypt and check, in fewer pages, since
# an idle sidecar's resident memory is mostly the binary's own code.
FROM rust:1.95-alpine3.22 AS build
RUN apk add --no-cache musl-dev ca-certificates
WORKDIR /src
COPY . .
# Static, non-PIE and size-optimised.
ENV RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=s \
    CARGO_PROFILE_RELEASE_PANIC=abort
RUN cargo build --release --locked --bin credseal

FROM build AS build-sidecar
RUN cargo build --release --locked --no-default-features --bin credseal --target-dir /src/target/sidecar

FROM scratch AS sidecar
COPY --from=build-sidecar /src/target/sidecar/release/credseal /credseal
USER 65532:65532
ENTRYPOINT ["/credseal"]

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/release/credseal /credseal
USER 65532:65532
ENTRYPOINT ["/credseal"]
