#!/bin/sh
# wheeltasks: build one module's wheel(s) into $WHEELS_DIR, inside a build stage of the
# Dockerfile beside this folder. POSIX sh: it runs in Alpine and other musl images.
#
#   build.sh setup    check the stage's Python; install build tools where apk can
#   build.sh native   build in the target platform's own builder (natively or under QEMU)
#   build.sh toolchain  make the cross toolchain of one target (zig wrappers, crossenv)
#   build.sh cross    build in the build platform's builder with a cross toolchain, against
#                     the target builder's root mounted at $SYSROOT (never run: no QEMU)
#
# The job's parameters arrive as build args (see the Dockerfile), secrets as
# /run/secrets/{ca,pipindex}, the recipe in $RECIPES_DIR, offered wheels in $IMPORTS_DIR.
set -eu

say() { echo "wheeltasks: $*"; }
fail() { echo "wheeltasks: $*" >&2; exit 1; }

python_version() { python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

setup() {
    have=$(python_version) || fail "${BUILDER} has no working python3; fix the builder image template"
    [ "$have" = "$PYTHON" ] \
        || fail "${BUILDER} runs Python $have, not ${PYTHON}: fix the builder image template (BUILDER_IMAGE)"
    secrets
    if command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; then
        say "build tools present in ${BUILDER}"
    elif command -v apk >/dev/null 2>&1; then
        apk add --no-cache build-base patchelf ccache
    else
        echo "wheeltasks: no C compiler and no apk in ${BUILDER}: only pure-Python modules can build" >&2
    fi
    if [ "${1:-}" = cross ]; then
        # The cross toolchain (zig) and crossenv, in the build platform's Python.
        if command -v apk >/dev/null 2>&1 && ! command -v readelf >/dev/null 2>&1; then
            apk add --no-cache binutils patchelf
        fi
        python3 -m pip install --disable-pip-version-check --root-user-action=ignore -q "$ZIGLANG" "$CROSSENV"
    fi
}

# The CA bundle and the index (its full URL from the secret when it holds credentials).
secrets() {
    if [ -s /run/secrets/ca ]; then
        export PIP_CERT=/run/secrets/ca SSL_CERT_FILE=/run/secrets/ca REQUESTS_CA_BUNDLE=/run/secrets/ca \
               CARGO_HTTP_CAINFO=/run/secrets/ca CURL_CA_BUNDLE=/run/secrets/ca
    fi
    if [ -s /run/secrets/pipindex ]; then PIP_INDEX_URL=$(cat /run/secrets/pipindex); fi
    if [ -n "${PIP_INDEX_URL:-}" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi
}

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
        set -- $pip_cmd wheel --wheel-dir "$WHEELS_DIR"
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

# The target's Python in the target root: Alpine's python images keep it in /usr/local,
# other builders in /opt/<prefix> or /usr.
target_python() {
    for p in "$SYSROOT"/usr/local/bin/python"$PYTHON" "$SYSROOT"/opt/*/bin/python"$PYTHON" "$SYSROOT"/usr/bin/python"$PYTHON"; do
        [ -f "$p" ] && { echo "$p"; return 0; }
    done
    fail "no python$PYTHON in the target builder's root ($SYSROOT/usr/local/bin, /opt/*/bin, /usr/bin)"
}

# Alpine target roots get their C library's headers and the declared packages ($1) from
# the target's own repositories and keys, installed natively by this stage's apk into the
# root (a read-write mount: what is installed lasts one RUN).
target_packages() {
    if command -v apk >/dev/null 2>&1 && [ -f "$SYSROOT/etc/apk/repositories" ]; then
        say "apk add --root $SYSROOT --arch $ALPINE_ARCH musl-dev $*"
        apk add --root "$SYSROOT" --arch "$ALPINE_ARCH" --keys-dir "$SYSROOT/etc/apk/keys" \
            --repositories-file "$SYSROOT/etc/apk/repositories" --no-scripts --no-cache musl-dev "$@"
    elif [ "$#" -gt 0 ]; then
        say "the target root has no apk: not installing $* (the target builder must already have them)"
    fi
}

# The cross toolchain of one target: zig wrappers and the crossenv over the target's
# Python, in $CROSS_DIR. It depends on the two builders only, so it is a layer of its own
# that every job of the same target reuses.
toolchain() {
    secrets
    say "cross toolchain for $ZIG_TARGET against ${BUILDER}"
    target_packages
    zig=$(python3 -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
    bin=$CROSS_DIR/bin
    sh "$LIB_DIR/toolchain.sh" "$bin" "$ZIG_TARGET" "$SYSROOT" "$zig" "$ALPINE_ARCH" $ZIG_CPU
    host_python=$(target_python)
    prefix=${host_python%/bin/*}
    # The target's build description names its own compiler and -L<prefix>/lib, a folder
    # of this stage too (with the build platform's libraries): crossenv gets the cross
    # tools and link commands that name the target root only.
    # crossenv installs the build venv's pip and setuptools into the cross venv: the very
    # wheels ensurepip bundles, so no index needs to have them.
    bundled=$(python3 -c 'import ensurepip, os; print(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled"))' \
        2>/dev/null || true)
    PIP_FIND_LINKS="$bundled" python3 -m crossenv --machine "$MACHINE" --sysroot "$SYSROOT" \
        --cc "$bin/$ZIG_TARGET-cc" --cxx "$bin/$ZIG_TARGET-c++" --ar "$bin/$ZIG_TARGET-ar" \
        --config-var "LDSHARED=$bin/$ZIG_TARGET-cc -shared -L$prefix/lib" \
        --config-var "LDCXXSHARED=$bin/$ZIG_TARGET-c++ -shared -L$prefix/lib" \
        --config-var "BLDSHARED=$bin/$ZIG_TARGET-cc -shared -L$prefix/lib" \
        "$host_python" "$CROSS_DIR/venv"
    . "$CROSS_DIR/venv/bin/activate"
    # crossenv builds with its build side's setuptools, which came from ensurepip and may be
    # older than a project needs (e.g. SPDX licenses): the index's newest, where it has one.
    build-pip install -q --upgrade setuptools wheel \
        || echo "wheeltasks: could not upgrade setuptools for the cross build; building with $(build-pip show setuptools 2>/dev/null | sed -n 's/^Version: //p')"
    echo "$prefix" >"$CROSS_DIR/prefix"
}

cross() {
    environment
    say "building $LABEL $VERSION for Python $PYTHON on $TARGETPLATFORM ($KIND, cross-compiled on $BUILDPLATFORM for $ZIG_TARGET)"
    target_packages ${APK:-}
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
    export CC="$bin/$ZIG_TARGET-cc" CXX="$bin/$ZIG_TARGET-c++" AR="$bin/$ZIG_TARGET-ar"
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
}

case ${1:-} in
    setup) shift; setup "$@" ;;
    native) native ;;
    toolchain) toolchain ;;
    cross) cross ;;
    *) fail "usage: build.sh setup [cross] | toolchain | native | cross" ;;
esac
