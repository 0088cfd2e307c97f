#!/bin/sh
# wheeltasks: the import check in the job's own builder container, on its platform: the
# job's wheels, already unpacked on the host into /check (no pip runs here), imported.
#   sh /wheeltasks/check.sh NAME...
#   sh /wheeltasks/check.sh --serve    the imports of many jobs' checks (check.py --serve)
# Environment: APK (no-shared wheels link the system's libraries: the builder gets them as
# the build did, where it has apk); TEST_COMMAND, run after the imports with the wheels on
# PYTHONPATH (its failure exits TEST_FAILED, which the host reports as the test's).
set -eu
. /wheeltasks/common.sh
if [ -n "${APK:-}" ] && command -v apk >/dev/null 2>&1; then
    secrets
    apk add --no-cache -q $APK
fi
if [ "${1:-}" = --serve ]; then
    exec python3 /wheeltasks/check.py --serve
fi
PYTHONPATH=/check python3 /wheeltasks/check.py "$@"
if [ -n "${TEST_COMMAND:-}" ]; then
    echo "wheeltasks: test: $TEST_COMMAND"
    status=0
    (cd /tmp && PYTHONPATH=/check sh -c "$TEST_COMMAND") || status=$?
    if [ "$status" -ne 0 ]; then
        echo "wheeltasks: test command failed (exit $status)"
        exit "${TEST_FAILED:-86}"
    fi
    echo "wheeltasks: test: ok"
fi
