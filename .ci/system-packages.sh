#!/usr/bin/env bash
# System packages the test suite needs, installed with apt-get where missing (we are root in CI):
#   swtpm, swtpm-tools   a TPM 2.0 simulator and swtpm_setup (EK certificates) for the TPM tests
#   libtss2-dev          tpm2-tss headers and libraries: tpm2-pytss builds against them
#   pkg-config           tpm2-pytss's build finds tpm2-tss with it
#   fuse3                /dev/fuse mounts: the configfs-tsm fixture is a FUSE file system
#   linux-libc-dev, gcc  the kernel UAPI headers the ioctl ABI test compiles against
#   systemd              systemd-analyze: the shipped unit (examples/deploy) is verified with it
#   ovmf                 Debian's OVMF firmware: SEV-SNP launch digests are computed over it in tests
#   chromium             the web console's browser tests (Playwright drives /usr/bin/chromium;
#                        its own browser download is never used)
# Without root or apt-get it says so and leaves the tests to skip with their own message.
set -u
PKGS="swtpm swtpm-tools libtss2-dev pkg-config fuse3 linux-libc-dev gcc chromium systemd ovmf"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system packages missing:$missing (not root or no apt-get: the tests that need them skip)" >&2
  exit 0
fi
echo "installing system packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null || \
  echo "apt-get could not install:$missing (the tests that need them skip)" >&2
exit 0
