#!/bin/sh
# Runs fuzz targets: usage run.sh BUILD SECONDS TARGET...
#
# Each target first replays its seed corpus (tests/fuzz/corpus/<target>) and its regression files
# (tests/fuzz/regressions/<target>, the inputs of past findings), then fuzzes for SECONDS seconds.
# New inputs go to BUILD/corpus/<target>, never into the repository; a finding is written to
# BUILD/findings/<target>/ and its log kept in BUILD/logs/<target>.log. Prints one line per target
# and exits 1 if any target found something.
build=$1
seconds=$2
shift 2
failed=0
for t in "$@"; do
    bin="$build/fuzz_$t"
    work="$build/corpus/$t"
    findings="$build/findings/$t"
    log="$build/logs/$t.log"
    mkdir -p "$work" "$findings" "$build/logs"
    dirs="tests/fuzz/corpus/$t"
    [ -d "tests/fuzz/regressions/$t" ] && dirs="$dirs tests/fuzz/regressions/$t"
    # Per-target settings. CIFAR-10 records are 3073 bytes, so its inputs need room for a few. A
    # model file sizes the net it describes: cnn_net_parse allocates its parameters and gradients,
    # up to 2^30 elements (4 GiB) each by the format's limits (calloc'd: untouched pages cost
    # nothing), so only allocations beyond that are findings there.
    extra=""
    case "$t" in
        cifar) extra="-max_len=12300" ;;
        model) extra="-malloc_limit_mb=4160" ;;
    esac
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$findings/" $extra $FUZZ_FLAGS "$work" $dirs >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/\1 edges, \2 features/p')
    total=$(sed -n 's/^INFO: Loaded [0-9]* modules *(\([0-9]*\) inline 8-bit counters).*/\1/p' "$log" | head -1)
    corpus=$(ls "$work" | wc -l)
    if [ "$rc" -ne 0 ]; then
        echo "fuzz_$t: FINDING (exit $rc) after ${runs:-?} runs; input in $findings/, log $log:"
        grep -E 'ERROR|SUMMARY|invariant|runtime error|Test unit written' "$log" | head -8 | sed 's/^/    /'
        failed=1
    else
        echo "fuzz_$t: ${runs:-?} runs in ${seconds} s, coverage ${cov:-?} (of ${total:-?} edges), $corpus new corpus files; no finding"
    fi
done
exit $failed
