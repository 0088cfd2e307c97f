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

# pip, setuptools and wheel for a crossenv's two venvs, kept in a cache mount ($TOOLS_HOME)
# per build platform, Python and pip: installed (and compiled) once per engine, then copied
# into each new crossenv in a fraction of a second, where crossenv's own ensurepip, pip
# freeze and pip install took ~12 s per target. pip is ensurepip's own, the version
# crossenv installs itself; setuptools and wheel the newest when first installed (crossenv
# builds with its build venv's setuptools: ensurepip's may be older than a project needs,
# e.g. for SPDX licenses). Sets VENV_TOOLS.
use_venv_tools() {
    pip_wheel=$(python3 -c 'import ensurepip, glob, os
print(" ".join(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))))' 2>/dev/null) \
        || pip_wheel=
    name=$(basename "${pip_wheel:-pip}" .whl)
    VENV_TOOLS=$TOOLS_HOME/venv-py$PYTHON-$name
    [ -d "$VENV_TOOLS/pip" ] && return 0
    say "installing pip, setuptools and wheel for crossenv (once per build platform: $TOOLS_HOME is a cache)"
    mkdir -p "$TOOLS_HOME"
    tmp=$(mktemp -d "$TOOLS_HOME/.install-XXXXXX")
    # From pip's own index, as the builders' set-up takes crossenv (PYPI_INDEX is for modules).
    if env -u PIP_INDEX_URL python3 -m pip install --disable-pip-version-check --root-user-action=ignore -q \
            --target "$tmp" ${pip_wheel:-pip} setuptools wheel; then
        rm -rf "$tmp/bin"
        # Another job may have installed it meanwhile: a rename onto its folder fails, and that is fine.
        python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$tmp" "$VENV_TOOLS" 2>/dev/null || rm -rf "$tmp"
        return 0
    fi
    # No index: the bundled pip and setuptools only, as crossenv's ensurepip gives, for this
    # toolchain only (not kept: the next one tries the index again).
    rm -rf "$tmp"
    VENV_TOOLS=$(mktemp -d)
    bundled=$(dirname "${pip_wheel:-.}")
    echo "wheeltasks: could not install setuptools and wheel for the cross build; building with ensurepip's" >&2
    python3 -m pip install --disable-pip-version-check --root-user-action=ignore -q --no-index \
        --target "$VENV_TOOLS" "$bundled"/*.whl || fail "could not install pip for the crossenv"
    rm -rf "$VENV_TOOLS/bin"
}

# venv_tools VENV: pip, setuptools and wheel in both of a crossenv's venvs (build and
# cross), from use_venv_tools, and the commands crossenv makes when it installs pip itself:
# pip in each venv, build-pip and cross-pip beside its activate script.
venv_tools() {
    venv=$1
    use_venv_tools
    for side in build cross; do
        site=$venv/$side/lib/python$PYTHON/site-packages
        [ -d "$site" ] || fail "crossenv made no $site"
        cp -a "$VENV_TOOLS/." "$site/"
        for name in pip pip3 "pip$PYTHON"; do
            launcher "$venv/$side/bin/$name" "$venv/$side/bin/python -m pip"
            launcher "$venv/bin/$side-$name" "$venv/$side/bin/$name"
        done
    done
}

# launcher PATH COMMAND: a script that runs COMMAND with its arguments.
launcher() {
    printf '#!/bin/sh\nexec %s "$@"\n' "$2" >"$1"
    chmod 0755 "$1"
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
    python3 -m crossenv --without-pip --machine "$MACHINE" --sysroot "$SYSROOT" \
        --cc "$bin/$ZIG_TARGET-cc" --cxx "$bin/$ZIG_TARGET-c++" --ar "$bin/$ZIG_TARGET-ar" \
        --config-var "LDSHARED=$bin/$ZIG_TARGET-cc -shared -L$prefix/lib" \
        --config-var "LDCXXSHARED=$bin/$ZIG_TARGET-c++ -shared -L$prefix/lib" \
        --config-var "BLDSHARED=$bin/$ZIG_TARGET-cc -shared -L$prefix/lib" \
        "$host_python" "$CROSS_DIR/venv"
    venv_tools "$CROSS_DIR/venv"
    echo "$prefix" >"$CROSS_DIR/prefix"
}

if [ "${1:-}" = toolchain ]; then
    set -eu
    . "$(dirname "$0")/common.sh"
    toolchain
fi
