# cryptography links an SSL library (OpenSSL by default, LibreSSL for the -libressl
# builds, which are always compiled from source) and needs Rust to build.
mod_build() {
    if command -v apk >/dev/null 2>&1; then
        if [ "${SSL}" = "libressl" ]; then
            apk add --no-cache libressl-dev
        else
            apk add --no-cache openssl-dev
        fi
        apk add --no-cache libffi-dev rust cargo pkgconf
    fi
    # Cargo's registry cache lives in the pip cache mount, so reruns skip downloads.
    export CARGO_HOME="${HOME:-/root}/.cache/pip/cargo"
}
