#!/bin/sh
# wheeltasks: what a cross build needs of its target: the target root at $SYSROOT (the
# target builder's files, mounted, never run as a whole), zig, and the target's facts as
# build args (wheeltasks.targets.shell_facts: ZIG_TARGET, MACHINE, LDSO, ...). Sourced by
# build.sh; `sh cross.sh toolchain` makes the target's toolchain layer.

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

# sysroot_path PATH: where a path of the target root is here, its symlinks followed within
# the root (an absolute link in the root names a file of the root, not of this stage).
sysroot_path() {
    p=$1
    n=0
    while [ -L "$SYSROOT$p" ] && [ "$n" -lt 40 ]; do
        link=$(readlink "$SYSROOT$p")
        case $link in /*) p=$link ;; *) p=$(dirname "$p")/$link ;; esac
        n=$((n + 1))
    done
    echo "$SYSROOT$p"
}

# The folders the target's loader (and auditwheel in the target's container) looks in: its
# path file, else musl's defaults; here under $SYSROOT, colon-separated.
target_ldpaths() {
    conf=$SYSROOT/etc/ld-musl-$LDSO.path
    if [ -f "$conf" ]; then
        dirs=$(tr ':\n' '  ' <"$conf")
    else
        dirs="/lib /usr/local/lib /usr/lib"
    fi
    paths=
    for d in $dirs; do paths=$paths:$SYSROOT$d; done
    echo "${paths#:}"
}

# zig from the ziglang wheel, kept in a cache mount ($ZIG_HOME) per version and build
# platform: installed once per engine, not per builder image, target or job. Sets ZIG.
use_zig() {
    dir=$ZIG_HOME/ziglang-${ZIGLANG#*==}
    ZIG=$dir/ziglang/zig
    [ -x "$ZIG" ] && return 0
    say "installing $ZIGLANG (once per build platform: $ZIG_HOME is a cache)"
    mkdir -p "$ZIG_HOME"
    tmp=$(mktemp -d "$ZIG_HOME/.install-XXXXXX")
    # From pip's own index, as the builders' set-up takes its tools (PYPI_INDEX is for modules).
    env -u PIP_INDEX_URL python3 -m pip install --disable-pip-version-check --root-user-action=ignore -q --no-deps \
        --target "$tmp" "$ZIGLANG" || { rm -rf "$tmp"; fail "could not install $ZIGLANG"; }
    # Another job may have installed it meanwhile: a rename onto its folder fails, and that is fine.
    python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
    [ -x "$ZIG" ] || fail "no zig in $dir after installing $ZIGLANG"
}

# Programs built for the target run here under QEMU, as the import check's do (the engine
# needs binfmt handlers for the platform in any case): the target's loader at its own path,
# looking in the target root's folders. And `uname -m` names the target. So an autoconf
# `configure` that a `pip wheel` runs (PyNaCl's libsodium) configures for the target rather
# than for this build platform, and the test programs it runs work.
target_programs() {
    bin=$1
    loader=/lib/ld-musl-$LDSO.so.1
    target_loader=$(sysroot_path "$loader")
    if [ -e "$target_loader" ]; then
        mkdir -p /lib /etc
        ln -sfn "$target_loader" "$loader"
        target_ldpaths >"/etc/ld-musl-$LDSO.path"
    else
        say "no $loader in the target root: programs built for it cannot run in this stage"
    fi
    real_uname=$(command -v uname)
    cat >"$bin/uname" <<EOF
#!/bin/sh
# uname for $MACHINE (written by wheeltasks' cross.sh): configure scripts ask it what to build for
"$real_uname" "\$@" | sed "s/\$("$real_uname" -m)/$MACHINE/g"
EOF
    chmod 0755 "$bin/uname"
}

# The cross toolchain of one target: zig wrappers and the crossenv over the target's
# Python, in $CROSS_DIR. It depends on the two builders and these scripts only, so it is
# a layer of its own that every job of the same target reuses.
toolchain() {
    secrets
    say "cross toolchain for $ZIG_TARGET against ${BUILDER}"
    target_packages
    use_zig
    bin=$CROSS_DIR/bin
    sh "$LIB_DIR/toolchain.sh" "$bin" "$SYSROOT" "$ZIG"
    target_programs "$bin"
    host_python=$(target_python)
    prefix=${host_python%/bin/*}
    command -v python3 >"$CROSS_DIR/build-python"
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

if [ "${1:-}" = toolchain ]; then
    set -eu
    . "$(dirname "$0")/common.sh"
    toolchain
fi
