#!/bin/sh
# Source coverage that the fuzz corpora reach: usage coverage.sh TARGET...
#
# Builds each target with clang's source-based coverage (in build/fuzz-cov, no sanitizers), runs
# every input of its corpora once (the campaign's build/fuzz/corpus/<target>, the seeds and the
# regression files), and prints llvm-cov's line, region and branch coverage of the code that
# the target is there to test.
set -e
cov=build/fuzz-cov
for t in "$@"; do
    case "$t" in
        model) files="src/net/net.c src/io/model_text.c src/layers" ;;
        safetensors) files="src/io/safetensors.c" ;;
        idx | idx_gz) files="src/io/idx.c" ;;
        cifar) files="src/io/data.c" ;;   # of which the CIFAR-10 reader: cifar_* and cnn_cifar_read_fd
        image) files="src/io/image.c" ;;   # stb_image's own code is a system header: no line counts
        matrix) files="cli/matrix.c" ;;
        *) echo "coverage.sh: unknown target $t" >&2; exit 2 ;;
    esac
    make --no-print-directory -s FUZZ_BUILD=$cov FUZZ_SAN="-fprofile-instr-generate -fcoverage-mapping" "$cov/fuzz_$t"
    dirs="tests/fuzz/corpus/$t"
    [ -d "build/fuzz/corpus/$t" ] && dirs="build/fuzz/corpus/$t $dirs"
    [ -d "tests/fuzz/regressions/$t" ] && dirs="$dirs tests/fuzz/regressions/$t"
    rm -f "$cov/$t".*.profraw
    # shellcheck disable=SC2086
    LLVM_PROFILE_FILE="$cov/$t.%p.profraw" "$cov/fuzz_$t" -runs=0 -max_len=1048576 $dirs >"$cov/$t.log" 2>&1
    llvm-profdata merge -sparse "$cov/$t".*.profraw -o "$cov/$t.profdata"
    # shellcheck disable=SC2086
    echo "== fuzz_$t: $(find $dirs -type f | wc -l) inputs"
    # shellcheck disable=SC2086
    llvm-cov report "$cov/fuzz_$t" -instr-profile="$cov/$t.profdata" $files
    # Per function where the file holds more than the target reads: data.c's CIFAR-10 reader, and
    # safetensors.c's reader (its writer, cnn_st_save, is not input).
    case "$t" in
        cifar | safetensors)
            llvm-cov report -show-functions "$cov/fuzz_$t" -instr-profile="$cov/$t.profdata" $files | grep -v "^---" ;;
    esac
    # The IDX reader as both targets cover it, raw and gzipped.
    if [ "$t" = idx_gz ] && [ -f "$cov/idx.profdata" ]; then
        llvm-profdata merge -sparse "$cov/idx.profdata" "$cov/idx_gz.profdata" -o "$cov/idx_both.profdata"
        echo "== fuzz_idx and fuzz_idx_gz together"
        llvm-cov report "$cov/fuzz_idx" -object "$cov/fuzz_idx_gz" -instr-profile="$cov/idx_both.profdata" $files
    fi
done
