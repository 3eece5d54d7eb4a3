# A static mdp in an empty image. Build the binary first (see README):
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu
FROM scratch
COPY target/x86_64-unknown-linux-gnu/release/mdp /mdp
USER 65534:65534
EXPOSE 8000
ENTRYPOINT ["/mdp"]
CMD ["serve"]
