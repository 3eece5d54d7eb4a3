# mdp: one static binary in an empty image. `docker build` alone builds it:
#   docker build -t mdp:0.1.0 .
# The tag is the version in Cargo.toml, the image the exported Deployment runs
# (`mdp export --image` for another registry or tag).

# Build stage: a static binary (glibc linked in with crt-static) for the build host.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" \
 && cp "target/$target/release/mdp" /mdp

# Runtime stage: nothing but the binary, run as nobody.
FROM scratch
COPY --from=build /mdp /mdp
USER 65534:65534
EXPOSE 8000
ENTRYPOINT ["/mdp"]
CMD ["serve"]
