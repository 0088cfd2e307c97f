#!/bin/sh
# wheeltasks: the import check in the job's own builder container, on its platform: the
# job's wheels, already unpacked on the host into /check (no pip runs here), imported.
#   sh /wheeltasks/check.sh NAME...
# Environment: APK (no-shared wheels link the system's libraries: the builder gets them as
# the build did, where it has apk); TEST_COMMAND, run after the imports with the wheels on
# PYTHONPATH (its failure exits TEST_FAILED, which the host reports as the test's).
set -eu
. /wheeltasks/common.sh
if [ -n "${APK:-}" ] && command -v apk >/dev/null 2>&1; then
    secrets
    apk add --no-cache -q $APK
fi
PYTHONPATH=/check python3 -c '
import importlib, sys
own = set(sys.argv[1:])
print("wheeltasks: importing on Python %s (%s)" % (sys.version.split()[0], sys.implementation.cache_tag))
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] not in own:
            # A dependency that is not among the wheels: not this job to check.
            print("wheeltasks: import %s: not checked, it needs %s, which is not among the wheels" % (name, exc.name))
            continue
        raise
    print("wheeltasks: import %s: ok" % name)
' "$@"
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
