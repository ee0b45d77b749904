#!/bin/sh
# make demo: checks every layer of LeNet-5 by central differences, then runs one forward and
# backward pass through a small net with a loss and lists what it wrote.
set -e
build=${1:-build}
cnn="$build/cnn"
echo "== cnn gradcheck --model models/lenet5.cnn --seed 1"
"$cnn" gradcheck --model models/lenet5.cnn --seed 1
fx=tests/fixtures/001
out=$(mktemp -d)/grads.safetensors
echo
echo "== cnn grad --model $fx/model.cnn --weights $fx/weights.safetensors --input $fx/input.safetensors --out $out $(cat $fx/args)"
# shellcheck disable=SC2046
"$cnn" grad --model "$fx/model.cnn" --weights "$fx/weights.safetensors" --input "$fx/input.safetensors" \
    --out "$out" $(cat "$fx/args")

