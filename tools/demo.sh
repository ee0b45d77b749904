#!/bin/sh
# make demo: trains LeNet-5 on MNIST for 3 epochs with the progress shown, prints the test
# accuracy, and writes the checkpoint and the plot of the training curves.
set -e
build=${1:-build}
mkdir -p runs
echo "== cnn train --model models/lenet5.cnn --data mnist --epochs 3 --optimizer adam --lr 0.002 --batch 64"
"$build/cnn" train --model models/lenet5.cnn --data mnist --epochs 3 --optimizer adam --lr 0.002 --batch 64 \
    --seed 1 --out runs/lenet5-mnist.safetensors --log runs/lenet5-mnist.jsonl --plot runs/lenet5-mnist.png
echo
echo "== cnn eval --model models/lenet5.cnn --weights runs/lenet5-mnist.safetensors --data mnist"
"$build/cnn" eval --model models/lenet5.cnn --weights runs/lenet5-mnist.safetensors --data mnist
