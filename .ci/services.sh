#!/usr/bin/env bash
# Bring up the services the end-to-end tests need on a Debian 12 machine (run as root):
# a Docker engine with buildx, QEMU binfmt handlers for foreign architectures, and a
# plain registry on 127.0.0.1:5000. Idempotent: anything already working is left alone.
set -euo pipefail

REGISTRY_ADDR=127.0.0.1:5000
STATE_DIR=/var/lib/wheeltasks-ci
LOG_DIR=/var/log/wheeltasks-ci

say() { printf '[services] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "services.sh must run as root (it installs packages and starts daemons)" >&2
    exit 1
fi
mkdir -p "$STATE_DIR" "$LOG_DIR"

# ---- packages -------------------------------------------------------------------------
PACKAGES=(docker.io qemu-user-static binfmt-support docker-registry mmdebstrap arch-test skopeo
          apache2-utils ca-certificates curl patchelf python3 python3-venv
          binutils pkgconf)  # readelf and pkg-config for the fixtures' zig cross builds
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "packages present"
fi

# ---- QEMU binfmt ----------------------------------------------------------------------
# Containers of foreign architectures run through qemu-user-static's binfmt handlers;
# in a container or a minimal VM the binfmt_misc filesystem may not be mounted yet.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable >/dev/null 2>&1 || true
# The handlers this host needs: one per architecture of the product's table that this
# machine's CPU does not run itself (an x86_64 host runs i386 natively, and Debian registers
# no handler for it). This script runs before the package is installed, so it reads the
# table from the file written from it (wheeltasks/data/arches.tsv; tests/test_targets.py
# keeps it current), not from Python.
ARCHES_TSV="$(dirname "$0")/../wheeltasks/data/arches.tsv"
if [ ! -r "$ARCHES_TSV" ]; then
    echo "binfmt: cannot read the architecture table $ARCHES_TSV" >&2
    exit 1
fi
mapfile -t QEMU_HANDLERS < <(awk -F'\t' -v machine="$(uname -m)" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    {
        own = 0
        n = split($col["NATIVE"], native, " ")
        for (i = 1; i <= n; i++) if (native[i] == machine) own = 1
        if (!own && !seen[$col["QEMU"]]++) print "qemu-" $col["QEMU"]
    }' "$ARCHES_TSV")
if [ "${#QEMU_HANDLERS[@]}" -eq 0 ] || [ -e "/proc/sys/fs/binfmt_misc/${QEMU_HANDLERS[0]}" ]; then
    say "binfmt: qemu handlers enabled"
else
    echo "binfmt: no ${QEMU_HANDLERS[0]} handler after update-binfmts --enable" >&2
    exit 1
fi

# ---- buildx ---------------------------------------------------------------------------
# Debian 12's docker.io ships no buildx; Debian 13 packages a static binary. Fetch that
# one .deb through a throw-away apt configuration (its own sources and lists) so the
# host's apt state never sees trixie. The archive URL is the host's own bookworm one.
# System-wide, so it does not depend on the HOME of whoever runs docker (tests set their own).
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
if HOME=/nonexistent docker buildx version >/dev/null 2>&1; then
    say "buildx present: $(docker buildx version | head -1)"
else
    say "installing docker-buildx from Debian 13"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    archive=""
    # deb822 sources first (Debian 12 default), then one-line sources.
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        archive=$(awk '
            /^URIs:/   { uri=$2 }
            /^Suites:/ { for (i=2;i<=NF;i++) if ($i=="bookworm") ok=1 }
            /^$/       { if (ok && uri!="") { print uri; exit } ok=0; uri="" }
            END        { if (ok && uri!="") print uri }' "$f" | head -1)
        [ -n "$archive" ] && break
    done
    if [ -z "$archive" ] && [ -e /etc/apt/sources.list ]; then
        archive=$(awk '$1=="deb" && $0 ~ / bookworm / { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
                  /etc/apt/sources.list | head -1)
    fi
    if [ -z "$archive" ]; then
        echo "no bookworm entry in /etc/apt/sources.list(.d) to derive the trixie source from" >&2
        exit 1
    fi
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $archive trixie main" >"$tmp/trixie.list"
    apt_tmp=(-o "Dir::Etc::SourceList=$tmp/trixie.list" -o "Dir::Etc::SourceParts=/dev/null"
             -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
             -o "APT::Get::List-Cleanup=false" -o "Debug::NoLocking=true"
             -o "APT::Sandbox::User=root")
    apt-get "${apt_tmp[@]}" update -qq
    (cd "$tmp/deb" && apt-get "${apt_tmp[@]}" download docker-buildx >/dev/null)
    dpkg-deb -x "$tmp"/deb/docker-buildx_*.deb "$tmp/root"
    bin=$(find "$tmp/root" -type f -path "*/cli-plugins/docker-buildx" | head -1)
    mkdir -p "$PLUGIN_DIR"
    install -m 0755 "$bin" "$PLUGIN_DIR/docker-buildx"
    rm -rf "$tmp"
    trap - EXIT
    say "buildx installed: $(docker buildx version | head -1)"
fi

# ---- Docker engine --------------------------------------------------------------------
# No bridge and no iptables: this machine may not manage the network, so builds and
# containers use --network host. The daemons get their own session (setsid) so they
# outlive the shell or CI step that ran this script.
if docker info >/dev/null 2>&1; then
    say "docker engine answers"
else
    say "starting dockerd (log: $LOG_DIR/dockerd.log)"
    setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false \
        >"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        echo "dockerd did not answer within 60 s; see $LOG_DIR/dockerd.log" >&2
        tail -20 "$LOG_DIR/dockerd.log" >&2 || true
        exit 1
    fi
    say "docker engine up: $(docker version --format '{{.Server.Version}}')"
fi

# ---- registry -------------------------------------------------------------------------
# Debian's docker-registry is the CNCF distribution registry. Own config (not the
# packaged /etc/docker/registry/config.yml) so the address, storage and the absence of
# auth are exactly what the tests expect. Deletion is enabled so tests can clean up.
registry_up() { curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null; }
# On a machine with systemd the package starts its own service on every interface's
# port 5000 with the packaged config; ours listens on loopback only.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    say "stopping the packaged docker-registry service (it listens on all interfaces)"
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
if registry_up; then
    say "registry answers on $REGISTRY_ADDR"
else
    mkdir -p "$STATE_DIR/registry"
    cat >"$STATE_DIR/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF
    say "starting docker-registry on $REGISTRY_ADDR (log: $LOG_DIR/registry.log)"
    setsid nohup /usr/bin/docker-registry serve "$STATE_DIR/registry.yml" \
        >"$LOG_DIR/registry.log" 2>&1 </dev/null &
    for _ in $(seq 1 30); do
        registry_up && break
        sleep 0.5
    done
    if ! registry_up; then
        echo "registry did not answer on $REGISTRY_ADDR; see $LOG_DIR/registry.log" >&2
        tail -20 "$LOG_DIR/registry.log" >&2 || true
        exit 1
    fi
    say "registry up"
fi
# ---- everything the tests and fixtures call ---------------------------------------------
# A fresh machine has only what this script installed: check each command the tests, the
# fixture builds and the product call, and name every missing one on one line, rather than
# let the Docker tests error one by one later (as a missing arch-test once did).
missing=()
for cmd in docker dockerd docker-registry mmdebstrap arch-test skopeo htpasswd curl patchelf openssl \
           flock pgrep update-binfmts python3 readelf pkg-config; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
HOME=/nonexistent docker buildx version >/dev/null 2>&1 || missing+=("docker-buildx (system-wide)")
for handler in "${QEMU_HANDLERS[@]}"; do
    [ -e "/proc/sys/fs/binfmt_misc/$handler" ] || missing+=("binfmt:$handler")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "services: missing after install: ${missing[*]}" >&2
    exit 1
fi
say "ready"
