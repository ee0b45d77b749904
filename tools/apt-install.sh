#!/bin/sh
# Installs those of the given Debian packages that this machine lacks, with apt-get (through sudo
# when not root). Used by tools/install-deps.sh and tools/fetch-data.sh.
#   sh tools/apt-install.sh PACKAGE...
# apt-get update runs once: `make test` or `make demo` may get here several times (the library's
# packages, the tests', npm for the data), and an index fetched by this script in the last hour,
# as its stamp file says, is fresh enough for the next install.
set -e
missing=""
for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
command -v apt-get >/dev/null 2>&1 || { echo "apt-install: apt-get is needed to install:$missing" >&2; exit 1; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "apt-install: not root and no sudo: cannot install:$missing" >&2; exit 1; }
    SUDO=sudo
fi
echo "installing:$missing" >&2
stamp="${TMPDIR:-/tmp}/cnn-apt-update.stamp"
if [ -z "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
    $SUDO apt-get update -qq
    touch "$stamp"
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
