# bcrypt is a Rust extension (PyO3, built with setuptools-rust or maturin).
mod_apk="cargo rust"
# The builder's Rust has only its own platform's standard library: build on the target.
mod_cross=no

mod_build() {
    export CARGO_HOME="${HOME:-/root}/.cache/pip/cargo"
}
