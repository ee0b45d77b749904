#!/bin/sh
# Runs every test binary under BUILD/tests with cmocka's TAP output and prints one closing line,
# "N passed, N failed". Exits nonzero if any test failed or any binary crashed.
build=${1:-build}
export CNN_BIN="$build/cnn"
export CMOCKA_MESSAGE_OUTPUT=TAP
# The CLI uses every core by default; the tests' nets are tiny, and on a machine busy with other
# work two threads can make them several times slower than one. The bits are the same for any
# count; the tests that vary it say so (test_train_cli unsets this to test the default).
export CNN_NUM_THREADS="${CNN_NUM_THREADS:-1}"
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0"
passed=0
failed=0
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1)
    rc=$?
    p=$(printf '%s\n' "$out" | grep -c '^ok ')
    f=$(printf '%s\n' "$out" | grep -c '^not ok ')
    printf '%s\n' "$out" | grep -v '^ok ' | grep -v '^1\.\.' | grep -v '^# ok' | sed "s|^|$(basename "$t"): |"
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "$(basename "$t"): exited with status $rc"
        f=$((f + 1))
    fi
    echo "$(basename "$t"): $p passed, $f failed"
    passed=$((passed + p))
    failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
