#!/bin/sh
# wheeltasks: the import check in the job's own builder container, on its platform: the
# job's wheels, already unpacked on the host into /check (no pip runs here), imported.
#   sh /wheeltasks/check.sh NAME...
# Environment: APK (no-shared wheels link the system's libraries: the builder gets them as
# the build did, where it has apk).
set -eu
. /wheeltasks/common.sh
if [ -n "${APK:-}" ] && command -v apk >/dev/null 2>&1; then
    secrets
    apk add --no-cache -q $APK
fi
PYTHONPATH=/check exec python3 -c '
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
