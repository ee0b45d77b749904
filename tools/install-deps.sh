#!/bin/sh
# Installs the Debian packages that cnn needs and that this machine lacks.
#   jansson: the JSON of safetensors headers; zlib: gzipped IDX files; stb: image decoding;
#   cairo: the training-curve plots (PNG and SVG); cmocka: the test framework
set -e
want="libjansson-dev zlib1g-dev libstb-dev libcairo2-dev libcmocka-dev"
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
