#!/usr/bin/env bash
# The benchmarks' builders with two Pythons on amd64, arm64 and armv7 (bench_reuse's set):
#   $FIXTURE_REGISTRY/wheeltasks-fixtures/bench-builder:py3.11  the fixtures' builder:py3.11
#   $FIXTURE_REGISTRY/wheeltasks-fixtures/bench-builder:py3.13  linux/amd64 (the fixtures'
#       builder2:py3.13) and linux/arm64/v8 and linux/arm/v7: the fixtures' roots of those
#       platforms with CPython 3.13 cross-compiled beside their 3.11, into /opt/musl313
#       (tests/fixtures/builders/musl-cross/cross.sh with CROSS_PYTHON), first on PATH
# Not a test fixture: .ci never builds it, so a cold CI run does not grow by these minutes.
# The cross builds need a CPython 3.13 for the host as their build Python (Debian 12 has
# 3.11 only): one is compiled from Debian 13's source package into
# $FIXTURE_CACHE/tools/python3.13 (about 6 minutes, once). Runs the fixtures' build.sh
# first (cached), then is cached itself by a hash of its inputs (this file, the scripts it
# runs, the fixtures' hash): when the registry holds the marker tag it returns in seconds.
# Needs what the fixtures need (bash .ci/services.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FIXTURES=$HERE/../tests/fixtures/builders
REGISTRY=${FIXTURE_REGISTRY:-127.0.0.1:5000}
REPO_PATH=wheeltasks-fixtures/bench-builder
REPO=$REGISTRY/$REPO_PATH
PY=3.13
PREFIX=/opt/musl313
PY_SOURCE=python$PY/trixie
CACHE_ROOT=${FIXTURE_CACHE:-/var/cache/wheeltasks-fixtures}
TOOLS=$CACHE_ROOT/tools
HOST_PYTHON=$TOOLS/python$PY/bin/python$PY
CA_BUNDLE=${FIXTURE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
STD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ROOTS=("musl-arm64 arm64v8" "musl-armv7 armv7")
START=$SECONDS
say() { printf '[bench builders] %s\n' "$*"; }

fixtures=$(FIXTURE_REGISTRY=$REGISTRY bash "$FIXTURES/build.sh" | tee /dev/stderr)  # its lines shown as they come
HASH=$(grep -o 'inputs [0-9a-f]\{16\}' <<<"$fixtures" | head -1 | cut -c8-)
[ -n "$HASH" ] || { echo "$fixtures" >&2; echo "cannot read the fixtures' hash" >&2; exit 1; }
FIXTURE_CACHE_DIR=$CACHE_ROOT/$HASH
# The roots' tarballs are keyed by what goes into them, the images by this file as well.
ROOT_KEY=$( { echo "$HASH $PY $PREFIX $PY_SOURCE"; cd "$FIXTURES" && sha256sum musl-cross/*; } | sha256sum | cut -c1-16)
KEY=$( { echo "$ROOT_KEY"; sha256sum <"${BASH_SOURCE[0]}"; sha256sum <"$FIXTURES/Dockerfile"; } | sha256sum | cut -c1-16)
MARKER=py$PY-$KEY

ACCEPT='application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.list.v2+json'
MANIFEST_TYPES='application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json'
exists() { curl -fsS -o /dev/null -I -H "Accept: $ACCEPT" "http://$REGISTRY/v2/$REPO_PATH/manifests/$1" 2>/dev/null; }
if exists "$MARKER" && exists py3.11; then
    say "$REPO:py$PY is up to date (inputs $KEY)"
    exit 0
fi

mkdir -p "$CACHE_ROOT/bench" "$TOOLS"
exec 9>"$CACHE_ROOT/.bench-lock"
flock 9

# An apt configuration of source packages only: Debian 12's, and Debian 13's for python3.13
# (PY_SOURCE; Debian 13's own zlib and libffi are not wanted).
ARCHIVE=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$ARCHIVE" ] || ARCHIVE=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
APT_DIR=$CACHE_ROOT/apt/bench-sources
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/state"
: >"$APT_DIR/status"
for suite in bookworm trixie; do
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $ARCHIVE $suite main"
done >"$APT_DIR/sources.list"
cat >"$APT_DIR/apt.conf" <<EOF
Dir::Etc::SourceList "$APT_DIR/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::State "$APT_DIR/state";
Dir::State::Lists "$APT_DIR/lists";
Dir::State::status "$APT_DIR/status";
Dir::Cache "$APT_DIR/cache";
APT::Default-Release "bookworm";
Acquire::Languages "none";
Debug::NoLocking "true";
APT::Sandbox::User "root";
EOF
export APT_CONFIG=$APT_DIR/apt.conf
apt-get update -qq >/dev/null

# ---- the build Python: CPython 3.13 for this host --------------------------------------
# (Only the interpreter is needed: no ensurepip, and no module that needs a -dev package.)
if ! "$HOST_PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
    say "compiling CPython $PY for the host (build Python of the cross builds) into $TOOLS/python$PY"
    work=$(mktemp -d "$CACHE_ROOT/bench/host-python.XXXXXX")
    (
        cd "$work"
        apt-get source --download-only -qq "$PY_SOURCE" >/dev/null
        mkdir src && tar -xf "$(ls python"$PY"_*.orig.tar.* | grep -v '\.asc$')" -C src --strip-components=1
        cd src
        ./configure -q --prefix="$TOOLS/python$PY" --without-ensurepip --disable-test-modules OPT="-DNDEBUG -O1"
        make -j"$(nproc)" -s && make -s install
    ) >"$CACHE_ROOT/bench/host-python.log" 2>&1 || { tail -30 "$CACHE_ROOT/bench/host-python.log" >&2; exit 1; }
    rm -rf "$work"
fi

# ---- the foreign roots, a second Python each ----------------------------------------------
# From the fixtures' own tarballs (build.sh keeps them), so each keeps its 3.11 as well.
root_tar() { echo "$CACHE_ROOT/bench/$1-py$PY-$ROOT_KEY.tar"; }
second_python() {
    local name=$1 arch=$2 facts=$FIXTURE_CACHE_DIR/facts-$2.sh root out
    out=$(root_tar "$name")
    [ -s "$out" ] && return 0
    root=$(mktemp -d "$CACHE_ROOT/bench/root-$name.XXXXXX")
    say "$name: CPython $PY cross-compiled (log: $CACHE_ROOT/bench/$name.log)"
    if ! {
        tar -xf "$FIXTURE_CACHE_DIR/$name.tar" -C "$root" \
        && env -i PATH="$STD_PATH" HOME="${HOME:-/root}" LANG=C.UTF-8 SSL_CERT_FILE="$CA_BUNDLE" PIP_CERT="$CA_BUNDLE" \
               APT_CONFIG="$APT_CONFIG" FIXTURE_TOOLS="$TOOLS" BUILD_PYTHON="$HOST_PYTHON" \
               CROSS_PYTHON="$PY" CROSS_PREFIX="$PREFIX" CROSS_PYTHON_SOURCE="$PY_SOURCE" bash "$FIXTURES/musl-cross/cross.sh" "$root" "$facts" \
        && mkdir -p "$root/tmp/wt" "$root/dev" && cp "$FIXTURES/musl-cross/check.sh" "$root/tmp/wt/" \
        && mknod -m 666 "$root/dev/null" c 1 3 \
        && (. "$facts"; env -i PATH="$STD_PATH" LANG=C.UTF-8 EXPECT_MACHINE="$MACHINE" CHECK_PREFIX="$PREFIX" \
                ${QEMU_CPU:+QEMU_CPU="$QEMU_CPU"} chroot "$root" /bin/sh /tmp/wt/check.sh) \
        && rm -rf "$root/tmp/wt" "$root/dev/null" \
        && tar --numeric-owner -C "$root" -cf "$out.partial" . && mv "$out.partial" "$out"
    } >"$CACHE_ROOT/bench/$name.log" 2>&1; then
        tail -40 "$CACHE_ROOT/bench/$name.log" >&2
        rm -rf "$root"
        echo "$name: failed (full log: $CACHE_ROOT/bench/$name.log)" >&2
        return 1
    fi
    rm -rf "$root"
}
pids=()
for entry in "${ROOTS[@]}"; do
    # shellcheck disable=SC2086
    set -- $entry
    second_python "$1" "$2" &
    pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" -eq 0 ] || exit 1

# ---- images: each root as a one-platform tag, then one index with the amd64 one ------------
# One index names one repository: the amd64 image (the fixtures' builder2) is copied in first.
say "musl-amd64: $REGISTRY/wheeltasks-fixtures/builder2:py$PY as $REPO:$MARKER-musl-amd64"
docker buildx imagetools create -t "$REPO:$MARKER-musl-amd64" "$REGISTRY/wheeltasks-fixtures/builder2:py$PY" \
    >"$CACHE_ROOT/bench/copy.log" 2>&1 || { cat "$CACHE_ROOT/bench/copy.log" >&2; exit 1; }
# descriptor TAG [PLATFORM]: the index entry of a one-platform tag, PLATFORM given (BuildKit
# drops arm64's "v8" from the image config) or, for an index of one image, its own entry.
descriptor() {
    local manifest
    manifest=$(curl -fsS -H "Accept: $ACCEPT,$MANIFEST_TYPES" -D "$CACHE_ROOT/bench/headers" \
        "http://$REGISTRY/v2/$REPO_PATH/manifests/$1")
    python3 - "$manifest" "$CACHE_ROOT/bench/headers" "${2:-}" <<'EOF'
import json, sys
document, headers, platform = json.loads(sys.argv[1]), open(sys.argv[2]).read().splitlines(), sys.argv[3]
if "manifests" in document:  # an index: its one image
    print(json.dumps(document["manifests"][0]))
    sys.exit()
header = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in headers if ":" in line)}
os_, arch, *variant = platform.split("/")
print(json.dumps({"mediaType": header["content-type"], "digest": header["docker-content-digest"],
                  "size": int(header["content-length"]),
                  "platform": {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}}))
EOF
}
descriptors=("$(descriptor "$MARKER-musl-amd64")")
for entry in "${ROOTS[@]}"; do
    # shellcheck disable=SC2086
    set -- $entry
    platform=$(. "$FIXTURE_CACHE_DIR/facts-$2.sh"; echo "$PLATFORM")
    ctx=$(mktemp -d "$CACHE_ROOT/bench/ctx.XXXXXX")
    cp "$FIXTURES/Dockerfile" "$ctx/Dockerfile"
    ln "$(root_tar "$1")" "$ctx/rootfs.tar"
    tag=$MARKER-$1
    say "$1: pushing $REPO:$tag ($platform)"
    docker buildx build --platform "$platform" --network host --progress plain \
        --build-arg "BUILDER_PATH=$PREFIX/bin:/opt/musl/bin:$STD_PATH" --label "org.wheeltasks.bench-builder=$KEY" \
        --output "type=image,name=$REPO:$tag,push=true" "$ctx" >"$CACHE_ROOT/bench/push-$1.log" 2>&1 \
        || { tail -30 "$CACHE_ROOT/bench/push-$1.log" >&2; exit 1; }
    rm -rf "$ctx"
    descriptors+=("$(descriptor "$tag" "$platform")")
done
say "assembling $REPO:py$PY and :py3.11"
{ docker buildx imagetools create -t "$REPO:$MARKER" -t "$REPO:py$PY" "${descriptors[@]}" \
  && docker buildx imagetools create -t "$REPO:py3.11" "$REGISTRY/wheeltasks-fixtures/builder:py3.11"; } \
    >"$CACHE_ROOT/bench/index.log" 2>&1 || { cat "$CACHE_ROOT/bench/index.log" >&2; exit 1; }
find "$CACHE_ROOT/bench" -maxdepth 1 -name '*.tar' ! -name "*-$ROOT_KEY.tar" -delete
say "built $REPO:py$PY ($KEY) in $((SECONDS - START)) s"
