#!/bin/sh
# make smoke-cifar: one epoch of ResNet-20 (models/resnet20.cnn) on a generated CIFAR-10 binary
# directory, with the ResNet recipe's augmentation, and the time per epoch of 50,000 images
# extrapolated from it. No registry here ships CIFAR-10: tools/make_cifar_like.py writes files in
# its format, so the whole pipeline (reader, augmentation, batch norm, residual adds, checkpoint)
# runs as it would on the real data.
# Usage: sh tools/cifar-smoke.sh [BUILD] [TRAIN_RECORDS] [THREADS]
set -e
build=${1:-build}
n=${2:-5000}
threads=${3:-2}
dir=runs/cifar-smoke
mkdir -p "$dir"
/usr/bin/python3 tools/make_cifar_like.py "$dir/data" --train "$n" --test 1000
rm -f "$dir/resnet20.safetensors" "$dir/resnet20.jsonl"
echo "== cnn train --model models/resnet20.cnn --data $dir/data --epochs 1 --batch 128 (SGD, onecycle, crop=4 + flip)"
"$build/cnn" train --model models/resnet20.cnn --data "$dir/data" --epochs 1 --batch 128 --optimizer sgd \
    --lr 0.1 --momentum 0.9 --nesterov --weight-decay 5e-4 --no-decay-bn-bias --schedule onecycle \
    --augment crop=4,flip --threads "$threads" --seed 1 --out "$dir/resnet20.safetensors" --log "$dir/resnet20.jsonl"
secs=$(sed -n 's/.*"seconds": \([0-9.]*\).*/\1/p' "$dir/resnet20.jsonl" | tail -n 1)
awk -v s="$secs" -v n="$n" -v t="$threads" 'BEGIN {
    e = s * 50000 / n
    printf "\n%d images in %.1f s of training on %d thread(s): %.0f images/s\n", n, s, t, n / s
    printf "extrapolated: %.0f s (%.1f min) per epoch of the 50,000 training images of CIFAR-10\n", e, e / 60
    printf "  30 epochs %.1f h, 182 epochs (the 64k steps of He et al.) %.1f h\n", 30 * e / 3600, 182 * e / 3600 }'
