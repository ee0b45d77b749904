#!/bin/sh
# Installs the Debian packages that cnn needs and that this machine lacks.
#   sh tools/install-deps.sh lib      what the library and the CLI need (`make`, `make demo`)
#   sh tools/install-deps.sh build    that, and what the tests need (`make test`; the default)
#   sh tools/install-deps.sh bench    that, and what `make bench` needs besides
#   sh tools/install-deps.sh fuzz     that, and what `make fuzz` and CI's leak check need besides
#   sh tools/install-deps.sh MODE openblas   MODE's packages and OpenBLAS's headers and library,
#                                     for `make BLAS=openblas` (optional; the default build lacks it)
#
#   lib: jansson: the JSON of safetensors headers; zlib: gzipped IDX files; stb: image decoding;
#   cairo: the training-curve plots (PNG and SVG)
#   build: cmocka: the test framework; python3-torch: test_torch_interop loads a checkpoint into
#   PyTorch with load_state_dict(strict=True); pkgconf (the pkg-config command): test_install
#   builds a program with `pkg-config --cflags --libs cnn`. `make demo` leaves these out, so that
#   a bare machine does not download PyTorch to train LeNet-5.
#   bench: python3-torch, the PyTorch side of the benchmark (run with /usr/bin/python3), and
#   OpenBLAS, which takes over libblas.so.3 from the reference BLAS, so that PyTorch's matrix
#   products (the linear layers) run at their best
#   fuzz: clang, libclang-rt-dev and libomp-dev (libFuzzer and the sanitizers with OpenMP), llvm
#   (llvm-profdata and llvm-cov, a fuzz campaign's coverage report), valgrind (the leak check of a
#   short `cnn train`, tools/valgrind-train.sh)
#   openblas: libopenblas-dev (cblas.h, -lopenblas), for the build whose gemm() calls
#   cblas_sgemm instead of cnn's own micro-kernels
set -e
lib="libjansson-dev zlib1g-dev libstb-dev libcairo2-dev"
want="$lib libcmocka-dev python3-torch pkgconf"
case "${1:-build}" in
    lib) want="$lib" ;;
    build) ;;
    bench) want="$want libopenblas0-pthread" ;;
    fuzz) want="$want clang libclang-rt-dev libomp-dev llvm valgrind" ;;
    *) echo "usage: install-deps.sh [lib|build|bench|fuzz] [openblas]" >&2; exit 2 ;;
esac
case "${2:-}" in
    "") ;;
    openblas) want="$want libopenblas-dev" ;;
    *) echo "usage: install-deps.sh [lib|build|bench|fuzz] [openblas]" >&2; exit 2 ;;
esac
sh "$(dirname "$0")/apt-install.sh" $want
