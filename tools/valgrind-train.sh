#!/bin/sh
# Runs a short `cnn train` under valgrind --leak-check=full and fails on any memory error or leak
# that cnn owns: on the tiny synthetic data set of tests/train_fixtures/adam (20 samples of 1×8×8),
# two epochs with a checkpoint every 3 steps, a log and an SVG plot, then a resume for a third
# epoch, and an eval of the result. Usage: tools/valgrind-train.sh [BUILD] (default build).
#
# Leaks are "definitely" or "indirectly lost" blocks; fontconfig's caches, reached through cairo's
# text in the plot, are its own (tests/valgrind.supp).
set -e
build=${1:-build}
command -v valgrind >/dev/null || { echo "valgrind is missing: sh tools/install-deps.sh fuzz" >&2; exit 2; }
dir=$(mktemp -d /tmp/cnn_valgrind_XXXXXX)
# Set, so that cnn does not start itself again with it (src/base/omp_spin.h): valgrind does not
# follow an exec, and the run would escape it.
export GOMP_SPINCOUNT=10000
trap 'rm -rf "$dir"' EXIT INT TERM
fx=tests/train_fixtures/adam
vg() {
    valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
        --error-exitcode=99 --suppressions=tests/valgrind.supp --log-file="$dir/valgrind.log" "$@" \
        >"$dir/out.log" 2>&1 || {
        echo "valgrind: '$*' failed:" >&2
        cat "$dir/valgrind.log" "$dir/out.log" >&2
        exit 1
    }
    [ ! -s "$dir/valgrind.log" ] || { cat "$dir/valgrind.log" >&2; exit 1; }
}
vg "$build/cnn" train --model "$fx/model.cnn" --data "$fx/data.safetensors" --epochs 2 --batch 4 \
    --optimizer adam --checkpoint-every 3 --out "$dir/ck.safetensors" --log "$dir/log.jsonl" --plot "$dir/curves.svg"
vg "$build/cnn" train --model "$fx/model.cnn" --data "$fx/data.safetensors" --resume "$dir/ck.safetensors" \
    --epochs 3 --out "$dir/ck.safetensors" --log "$dir/log.jsonl"
vg "$build/cnn" eval --model "$fx/model.cnn" --weights "$dir/ck.safetensors" --data "$fx/data.safetensors" --split train
echo "valgrind: cnn train, resume and eval: no memory errors, no leaks"
