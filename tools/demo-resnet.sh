#!/bin/sh
# make demo-resnet: trains models/resnet-fashion.cnn on Fashion-MNIST with the README's recipe
# (SGD + Nesterov, one-cycle, label smoothing, flips; under half an hour on 2 cores), with
# the progress bar on a terminal, then prints the test accuracy with `cnn eval`.
# EPOCHS=N shortens it (the one-cycle schedule then spans the N epochs).
set -e
build=${1:-build}
epochs=${EPOCHS:-15}
mkdir -p runs
out=runs/resnet-fashion.safetensors
set -- train --model models/resnet-fashion.cnn --data fashion-mnist --epochs "$epochs" --batch 64 \
    --optimizer sgd --lr 0.1 --momentum 0.9 --nesterov --weight-decay 5e-4 --no-decay-bn-bias \
    --schedule onecycle --label-smoothing 0.1 --augment flip --seed 1 \
    --out "$out" --log runs/resnet-fashion.jsonl --plot runs/resnet-fashion.png
echo "== cnn $*"
"$build/cnn" "$@"
echo
echo "== cnn eval --weights $out"
"$build/cnn" eval --weights "$out"
