# cryptography links an SSL library (OpenSSL by default, LibreSSL for the -libressl
# builds, which are always compiled from source) and is a Rust extension (PyO3, built
# with maturin); its build backend needs cffi, built first by this project.
mod_apk="${SSL}-dev libffi-dev cargo rust pkgconf"
mod_depends="cffi"
# The builder's Rust has only its own platform's standard library: build on the target.
mod_cross=no

mod_build() {
    # Cargo's registry cache lives in the pip cache mount, so reruns skip downloads.
    export CARGO_HOME="${HOME:-/root}/.cache/pip/cargo"
}
