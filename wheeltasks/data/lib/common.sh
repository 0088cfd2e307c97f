#!/bin/sh
# wheeltasks: what every script that runs in a build stage or a job's container shares.
# Sourced (POSIX sh: Alpine's busybox and other musl images run it).

say() { echo "wheeltasks: $*"; }
fail() { echo "wheeltasks: $*" >&2; exit 1; }

python_version() { python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

# The CA bundle and the index (its full URL from the secret when it holds credentials).
# Build stages get them as BuildKit secrets, containers as read-only mounts at the same
# paths; neither ever lands in a layer or in a container's environment.
secrets() {
    if [ -s /run/secrets/ca ]; then
        export PIP_CERT=/run/secrets/ca SSL_CERT_FILE=/run/secrets/ca REQUESTS_CA_BUNDLE=/run/secrets/ca \
               CARGO_HTTP_CAINFO=/run/secrets/ca CURL_CA_BUNDLE=/run/secrets/ca
    fi
    if [ -s /run/secrets/pipindex ]; then PIP_INDEX_URL=$(cat /run/secrets/pipindex); fi
    if [ -n "${PIP_INDEX_URL:-}" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi
}

# wheels_epoch PYTHON WHEEL...: the newest entry time in the wheels (seconds). auditwheel
# stamps what it patches or adds with SOURCE_DATE_EPOCH, so repairing the same wheels twice
# gives the same bytes. The same rule as wheeltasks.files.newest_zip_time, wherever the
# repair runs.
wheels_epoch() {
    py=$1
    shift
    "$py" - "$@" <<'EOF'
import calendar, sys, zipfile
times = [i.date_time for w in sys.argv[1:] for i in zipfile.ZipFile(w).infolist()]
print(calendar.timegm(max(times) + (0, 0, 0)) if times else 0)
EOF
}
