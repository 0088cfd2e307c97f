#!/bin/sh
# Write a zig-based cross toolchain for a musl target root:
#   toolchain.sh BINDIR SYSROOT ZIG
# gives BINDIR/$ZIG_TARGET-{cc,c++,ar,ranlib,ld,readelf,strip} and BINDIR/$ZIG_TARGET.libc
# (zig's libc paths file). ZIG is the `zig` binary of the `ziglang` wheel. The target comes
# from the environment, as wheeltasks.targets.shell_facts names it: ZIG_TARGET (zig's
# triple: aarch64-linux-musl, arm-linux-musleabihf, x86-linux-musl, ...), ZIG_CPU (CPU
# flags), ALPINE_ARCH (Alpine's name of the target, which names its libc), MULTIARCH (the
# musl triplet of Debian's folders and CPython's configure: i386-linux-musl where zig says
# x86) and DEBIAN_GNU (Debian's gnu triplet, for roots made from Debian's packages).
# POSIX sh: it runs in the build stage of an Alpine or other musl image.
#
# Why each piece (the cross-compilation notes of DESIGN.md):
# - zig bundles musl 1.2.5 headers and links its own libc stub; a target root may hold
#   an older musl (Debian 12: 1.2.3, no statx). The paths file makes zig compile against
#   the root's own headers and link the root's crt files and libc.so, so nothing can
#   need a symbol the target's libc lacks.
# - Alpine's libc.so has the soname libc.musl-<arch>.so.1 and auditwheel recognises musl
#   only by that name. Roots built from Debian's musl keep such a copy of libc.so in
#   /opt/musl/share/musl-libc, used as the crt folder when present. Linking any other
#   libc.so records "libc.so": the cc wrapper renames it after the link.
# - -fno-sanitize=undefined: without -O zig links its UBSan runtime (statx and ~78 more
#   libc symbols). -dynamic: zig links musl targets statically unless told (a configure
#   probe would then need libc.a). -Wl,-h is GNU ld's spelling, zig wants -soname.
# - -print-multiarch is how CPython's configure finds its platform triplet: the answer is
#   MULTIARCH, which is what configure computes itself.
set -eu

if [ "$#" -ne 3 ]; then
    echo "usage: $0 BINDIR SYSROOT ZIG (and ZIG_TARGET, ZIG_CPU, ALPINE_ARCH, MULTIARCH, DEBIAN_GNU set)" >&2
    exit 2
fi
BIN=$1 SYSROOT=$2 ZIG=$3
TRIPLE=${ZIG_TARGET:?} ALPINE=${ALPINE_ARCH:?} DEB_MUSL=${MULTIARCH:?} DEB_GNU=${DEBIAN_GNU:?}
CPU_FLAGS=${ZIG_CPU:-}
LIBC_NAME=libc.musl-$ALPINE.so.1

first_dir() {  # the first argument that is a folder
    for d in "$@"; do [ -d "$d" ] && { echo "$d"; return 0; }; done
    return 1
}
# Debian's musl-dev keeps musl in triplet folders; Alpine's is the system libc.
INCLUDE=$(first_dir "$SYSROOT/usr/include/$DEB_MUSL" "$SYSROOT/usr/include") || {
    echo "toolchain.sh: no musl headers in $SYSROOT" >&2; exit 1; }
CRT=$(first_dir "$SYSROOT/opt/musl/share/musl-libc" "$SYSROOT/usr/lib/$DEB_MUSL" "$SYSROOT/usr/lib")
for f in crt1.o crti.o crtn.o Scrt1.o libc.so; do
    [ -e "$CRT/$f" ] || { echo "toolchain.sh: $CRT/$f missing (musl-dev in the target root?)" >&2; exit 1; }
done
# crtbegin/crtend come with the target's gcc; without one, empty objects do (lld defines
# __dso_handle itself).
CC_DIR=
for d in "$SYSROOT"/usr/lib/gcc/"$DEB_GNU"/* "$SYSROOT"/usr/lib/gcc/*-linux-musl*/*; do
    [ -e "$d/crtbeginS.o" ] && { CC_DIR=$d; break; }
done
mkdir -p "$BIN"
if [ -z "$CC_DIR" ]; then
    CC_DIR=$BIN/$TRIPLE-crt
    mkdir -p "$CC_DIR"
    : >"$CC_DIR/empty.c"
    for f in crtbegin.o crtbeginS.o crtbeginT.o crtend.o crtendS.o; do
        "$ZIG" cc -target "$TRIPLE" $CPU_FLAGS -c "$CC_DIR/empty.c" -o "$CC_DIR/$f"
    done
fi
# Kernel headers: the fixture roots link Debian's linux-libc-dev folders here; Alpine's
# linux-headers are in /usr/include already.
KINCLUDE=
[ -d "$SYSROOT/opt/musl/share/kinclude" ] && KINCLUDE="-idirafter $SYSROOT/opt/musl/share/kinclude"

cat >"$BIN/$TRIPLE.libc" <<EOF
include_dir=$INCLUDE
sys_include_dir=$INCLUDE
crt_dir=$CRT
cc_dir=$CC_DIR
msvc_lib_dir=
kernel32_lib_dir=
darwin_sdk_dir=
EOF

READELF=$(command -v readelf || true)
PATCHELF=$(command -v patchelf || true)

# cc and c++: one template, the zig sub-command differs.
for tool in cc c++; do
    cat >"$BIN/$TRIPLE-$tool" <<EOF
#!/bin/sh
# zig $tool for $TRIPLE against $SYSROOT's musl (written by toolchain.sh)
n=\$#; prev=; out=; link=1; static=
for a in "\$@"; do
    case \$a in
        -print-multiarch|--print-multiarch) echo $DEB_MUSL; exit 0 ;;
        -Wl,-h,*) a=-Wl,-soname,\${a#-Wl,-h,} ;;
        -Wl,-h*) a=-Wl,-soname,\${a#-Wl,-h} ;;
        -c|-S|-E|-M|-MM|-fsyntax-only) link= ;;
        -static) static=1 ;;
    esac
    [ "\$prev" = -o ] && out=\$a
    case \$a in -o?*) out=\${a#-o} ;; esac
    prev=\$a
    set -- "\$@" "\$a"
done
shift "\$n"
[ -n "\$static" ] || set -- -dynamic "\$@"
ZIG_LIBC=$BIN/$TRIPLE.libc "$ZIG" $tool -target $TRIPLE $CPU_FLAGS -fno-sanitize=undefined -Wno-error=date-time $KINCLUDE "\$@" || exit
# A libc.so without Alpine's soname gets its name fixed in the output.
if [ -n "\$link" ] && [ -n "\$out" ] && [ -f "\$out" ] && [ -n "$PATCHELF" ] \\
   && "$READELF" -d "\$out" 2>/dev/null | grep -q '(NEEDED).*\[libc\.so\]'; then
    "$PATCHELF" --replace-needed libc.so $LIBC_NAME "\$out"
fi
EOF
done

printf '#!/bin/sh\nexec "%s" ar "$@"\n' "$ZIG" >"$BIN/$TRIPLE-ar"
# A linker of the target for the tools that ask one directly (libtool asks `$LD --help`
# whether it links shared libraries; the build machine's ld knows no s390x, and libtool
# then builds static libraries only). Links themselves go through the cc wrapper.
printf '#!/bin/sh\nexec "%s" ld.lld "$@"\n' "$ZIG" >"$BIN/$TRIPLE-ld"
printf '#!/bin/sh\nexec "%s" ranlib "$@"\n' "$ZIG" >"$BIN/$TRIPLE-ranlib"
# binutils' readelf reads every ELF machine (objdump/strip/nm are built for the host).
printf '#!/bin/sh\nexec "%s" "$@"\n' "${READELF:-readelf}" >"$BIN/$TRIPLE-readelf"
cat >"$BIN/$TRIPLE-strip" <<EOF
#!/bin/sh
# strip FILE...: zig objcopy --strip-all in place (options other than files are ignored)
for f in "\$@"; do
    case \$f in -*) continue ;; esac
    "$ZIG" objcopy --strip-all "\$f" "\$f.strip" && mv "\$f.strip" "\$f" || exit
done
EOF
chmod 0755 "$BIN/$TRIPLE-cc" "$BIN/$TRIPLE-c++" "$BIN/$TRIPLE-ar" "$BIN/$TRIPLE-ranlib" "$BIN/$TRIPLE-ld" \
    "$BIN/$TRIPLE-readelf" "$BIN/$TRIPLE-strip"
echo "$BIN/$TRIPLE-cc ($CRT, $LIBC_NAME)"
