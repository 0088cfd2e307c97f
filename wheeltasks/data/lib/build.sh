#!/bin/sh
# wheeltasks: build one module's wheel(s) into $WHEELS_DIR, inside a build stage of the
# Dockerfile beside this folder. POSIX sh: it runs in Alpine and other musl images.
#
#   build.sh native   build in the target platform's own builder (natively or under QEMU)
#   build.sh cross    build in the build platform's builder with the target's cross
#                     toolchain (cross.sh), against the target builder's root mounted at
#                     $SYSROOT; a shared build is repaired here too, into $WHEELS_DIR/repaired
#
# The job's parameters arrive as build args (see the Dockerfile), secrets as
# /run/secrets/{ca,pipindex}, the recipe in $RECIPES_DIR, offered wheels in $IMPORTS_DIR.
set -eu
LIB_DIR=$(dirname "$0")
. "$LIB_DIR/common.sh"
. "$LIB_DIR/cross.sh"

environment() {
    LABEL=${LABEL:-$MODULE}
    MODULE_NAME=$MODULE MODULE_VERSION=$VERSION SSL_LIBRARY=$SSL
    export LABEL MODULE VERSION PYTHON SSL KIND MODULE_NAME MODULE_VERSION SSL_LIBRARY
    secrets
    if [ -n "${NO_CACHE:-}" ]; then export PIP_NO_CACHE_DIR=1 CCACHE_DISABLE=1; fi
    for d in /usr/lib/ccache/bin /usr/lib/ccache; do
        if [ -d "$d" ]; then PATH="$d:$PATH"; break; fi
    done
    mkdir -p "$WHEELS_DIR"
    if ls "$IMPORTS_DIR"/*.whl >/dev/null 2>&1; then
        say "offering pulled wheels first:" $(cd "$IMPORTS_DIR" && ls ./*.whl)
        export PIP_PREFER_BINARY=1
    fi
}

# The recipe's mod_build (sourced here), then `pip wheel` unless the recipe built the wheel.
# $1: the pip command (python3 -m pip, or cross-pip).
recipe_and_wheel() {
    pip_cmd=$1
    if [ -n "${RECIPE:-}" ]; then
        say "recipe $RECIPES_DIR/$RECIPE"
        . "$RECIPES_DIR/$RECIPE"
        if command -v mod_build >/dev/null 2>&1; then say "mod_build"; mod_build; fi
    fi
    if [ -n "${WHEEL_BUILT_IN_SCRIPT:-}" ]; then
        say "the recipe built the wheel (WHEEL_BUILT_IN_SCRIPT)"
    else
        # -v: the build back-end's own output (compiler commands, a bundled configure's
        # checks) goes to the job's log, where a failed build is read.
        set -- $pip_cmd wheel -v --wheel-dir "$WHEELS_DIR"
        if [ -n "${NO_BINARY:-}" ]; then set -- "$@" --no-binary "$MODULE"; fi
        say "$* $MODULE==$VERSION"
        "$@" "$MODULE==$VERSION"
    fi
    ls "$WHEELS_DIR"/*.whl >/dev/null 2>&1 || fail "no wheel in $WHEELS_DIR after the build"
    ls -l "$WHEELS_DIR"
}

native() {
    environment
    say "building $LABEL $VERSION for Python $PYTHON on $TARGETPLATFORM ($KIND, native or emulated)"
    if [ -n "${APK:-}" ]; then
        if command -v apk >/dev/null 2>&1; then
            say "apk add $APK"; apk add --no-cache $APK
        else
            say "no apk in this builder: not installing $APK (the builder must already have them)"
        fi
    fi
    if [ -n "${DEPENDS:-}" ]; then
        say "installing mod_depends: $DEPENDS"
        python3 -m pip install --no-index --find-links "$IMPORTS_DIR" $DEPENDS \
            || python3 -m pip install --find-links "$IMPORTS_DIR" $DEPENDS
    fi
    recipe_and_wheel "python3 -m pip"
}

# auditwheel repair here, on the build platform, against the target root's libraries (its
# loader's folders, with what mod_apk installed into it): the same policy, bundled libraries
# and RPATHs as a repair in the target's own container, without emulating auditwheel. All or
# nothing: when a wheel cannot be repaired here, none is, and the repair step repairs them in
# the target's container instead.
cross_repair() {
    [ "$KIND" = shared ] || return 0
    set -- "$WHEELS_DIR"/*-linux_*.whl
    [ -e "$1" ] || return 0
    py=$(cat "$CROSS_DIR/build-python")
    tmp=$(mktemp -d)
    epoch=$(wheels_epoch "$py" "$@")
    # AUDITWHEEL_EXCLUDE: the target's libc where auditwheel files the machine under
    # another one's policy (ARMv6 under armv7l's, whose libc has Alpine's armv7 name).
    for wheel; do
        say "auditwheel repair $(basename "$wheel") against $SYSROOT"
        if ! SOURCE_DATE_EPOCH=$epoch "$py" -m auditwheel repair --ldpaths "$(target_ldpaths)" \
                ${AUDITWHEEL_EXCLUDE:+--exclude "$AUDITWHEEL_EXCLUDE"} --wheel-dir "$tmp" "$wheel"; then
            say "auditwheel repair failed on the build platform: the repair step repairs in the target's container"
            rm -rf "$tmp"
            return 0
        fi
    done
    mkdir -p "$WHEELS_DIR/repaired"
    mv "$tmp"/*.whl "$WHEELS_DIR/repaired/"
    rm -rf "$tmp"
}

cross() {
    environment
    say "building $LABEL $VERSION for Python $PYTHON on $TARGETPLATFORM ($KIND, cross-compiled on $BUILDPLATFORM for $ZIG_TARGET)"
    target_packages ${APK:-}
    use_zig  # its cache mount may have been pruned since the toolchain layer was made
    # BUILD_NO_CACHE: compile the module again. zig keeps the objects of what it compiles
    # in its local cache (a fresh one here) and its own runtime for the target (compiler_rt,
    # libc stubs: the toolchain, like the builder's gcc) in the global one, which stays.
    if [ -n "${NO_CACHE:-}" ]; then export ZIG_LOCAL_CACHE_DIR="$(mktemp -d)"; fi
    bin=$CROSS_DIR/bin
    PATH=$bin:$PATH
    prefix=$(cat "$CROSS_DIR/prefix")
    . "$CROSS_DIR/venv/bin/activate"
    # The target's libraries: its Python prefix (a builder's own zlib, libffi, OpenSSL) and
    # the system folders, found by -l, pkg-config and build scripts that ask for them.
    export CFLAGS="-I$prefix/include ${CFLAGS:-}"
    export LDFLAGS="-L$prefix/lib -L$SYSROOT/usr/lib -L$SYSROOT/lib -Wl,-rpath-link,$prefix/lib ${LDFLAGS:-}"
    export PKG_CONFIG_SYSROOT_DIR=$SYSROOT
    export PKG_CONFIG_LIBDIR="$SYSROOT/usr/lib/pkgconfig:$SYSROOT/usr/share/pkgconfig:$prefix/lib/pkgconfig"
    export CC="$bin/$ZIG_TARGET-cc" CXX="$bin/$ZIG_TARGET-c++" AR="$bin/$ZIG_TARGET-ar" LD="$bin/$ZIG_TARGET-ld"
    # Rust: cargo builds for the target with the same linker, where this builder's Rust
    # has that target's standard library; otherwise a Rust build fails (and CROSS=auto
    # falls back to an emulated build).
    if command -v rustc >/dev/null 2>&1 && [ -d "$(rustc --print sysroot)/lib/rustlib/$RUST_TARGET" ]; then
        upper=$(echo "$RUST_TARGET" | tr 'a-z-' 'A-Z_')
        export CARGO_BUILD_TARGET=$RUST_TARGET
        eval "export CARGO_TARGET_${upper}_LINKER=$bin/$ZIG_TARGET-cc"
    fi
    if [ -n "${DEPENDS:-}" ]; then
        # What the build imports runs on the build platform: from the index for it.
        say "installing mod_depends for the build: $DEPENDS"
        build-pip install $DEPENDS
    fi
    recipe_and_wheel cross-pip
    cross_repair
}

case ${1:-} in
    native) native ;;
    cross) cross ;;
    *) fail "usage: build.sh native | cross" ;;
esac
