#!/bin/sh
# Assembles the root filesystem of the operator's image: the one script both builds run, the
# Dockerfile's build stage (`docker build`) and `make image` (scripts/image-oci.py, no daemon).
#
#   scripts/image-rootfs.sh <binary> <outdir>
#
# <outdir> (created; must not exist or be empty) receives exactly:
#   /<name of binary>                     the operator
#   every shared library `ldd` reports,   at the path ldd resolves it to, the ELF interpreter
#   (the dynamic loader) included;        (so the loader finds them without /etc/ld.so.cache)
#   /etc/ssl/certs/ca-certificates.crt    AWS's TLS roots: rustls-native-certs reads this file
#   /etc/passwd, /etc/group               root and nonroot (65532), the user the image runs as
#   /etc/nsswitch.conf                    files, and hosts: files dns (/etc/hosts first, as in
#                                         any Debian image; Kubernetes writes the Pod's /etc/hosts)
# Nothing else: no shell, no package manager. Every file is read-only to the image's user, so the
# image runs unchanged with a read-only root filesystem.
set -eu
umask 022

die() {
	echo "image-rootfs: $*" >&2
	exit 1
}

[ $# -eq 2 ] || die "usage: $0 <binary> <outdir>"
bin=$1
out=$2
[ -f "$bin" ] && [ -x "$bin" ] || die "$bin: not an executable file"
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
	die "$out: exists and is not empty"
fi
mkdir -p "$out"

# Copies a host file (symlinks resolved) to the same path under $out.
copy() {
	[ -f "$1" ] || die "$1: missing on the build machine"
	mkdir -p "$out$(dirname "$1")"
	cp -L "$1" "$out$1"
	chmod "$2" "$out$1"
}

cp -L "$bin" "$out/$(basename "$bin")"
chmod 0755 "$out/$(basename "$bin")"

# `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", the loader as
# "/lib64/ld-linux-x86-64.so.2 (0x...)", the vDSO without a path (the kernel provides it).
libs=$(ldd "$bin") || die "ldd $bin failed"
if printf '%s\n' "$libs" | grep -q 'not found'; then
	die "ldd $bin: a library is missing: $libs"
fi
paths=$(printf '%s\n' "$libs" | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$paths" ] || die "ldd $bin reported no libraries (a static binary needs none of this script)"
for lib in $paths; do
	copy "$lib" 0755
done

copy /etc/ssl/certs/ca-certificates.crt 0644

mkdir -p "$out/etc"
cat >"$out/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin
EOF
cat >"$out/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$out/etc/nsswitch.conf"
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"
