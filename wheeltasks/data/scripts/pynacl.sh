# PyNaCl builds its bundled libsodium with configure and make, and its binding with cffi.
mod_apk="make"
mod_depends="cffi"
mod_build() {
    # PyNaCl runs libsodium's make one compiler at a time unless told (LIBSODIUM_MAKE_ARGS).
    LIBSODIUM_MAKE_ARGS="-j$(nproc 2>/dev/null || echo 2)"
    export LIBSODIUM_MAKE_ARGS
}
