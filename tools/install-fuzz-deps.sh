#!/bin/sh
# Installs the Debian packages that `make fuzz` and the CI's memory checks need, if missing:
#   clang and libclang-rt-dev: libFuzzer with AddressSanitizer and UndefinedBehaviorSanitizer;
#   libomp-dev: OpenMP for clang, which the kernels are built with;
#   llvm: llvm-profdata and llvm-cov, for the coverage report of a fuzz campaign;
#   valgrind: the leak check of a short `cnn train` (tools/valgrind-train.sh).
set -e
want="clang libclang-rt-dev libomp-dev llvm valgrind"
missing=""
for p in $want; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
