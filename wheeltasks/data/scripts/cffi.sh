# cffi compiles against libffi. Alpine builders get its headers from apk; a builder
# without apk must already have libffi where its compiler looks (e.g. in its prefix).
mod_build() {
    if command -v apk >/dev/null 2>&1; then
        apk add --no-cache libffi-dev
    fi
}
