#!/usr/bin/env bash
# Builds the fuzz targets and fuzzes each for MINUTES (default 1), or only TARGET (http1, url or
# chunked). One process at a time: the working corpus grows in fuzz/build/work-<target>/, seeded
# from the committed fuzz/corpus/<target>/, which it never writes to; crashes land in
# fuzz/build/crash-*. libFuzzer's final stats (inputs run, coverage) end each target's log.
#
#   fuzz/run.sh [MINUTES] [TARGET]
set -euo pipefail
cd "$(dirname "$0")"

minutes="${1:-1}"
targets="${2:-http1 url chunked}"

make -s all
status=0
for t in $targets; do
    # chunked.c refuses size and trailer lines over 4096 bytes: its inputs must be able to get there.
    max_len=4096
    [ "$t" = chunked ] && max_len=9000
    mkdir -p "build/work-$t"
    echo "== fuzz_$t for $minutes min (log: fuzz/build/run-$t.log)"
    if ! ./build/fuzz_$t -max_total_time=$((minutes * 60)) -print_final_stats=1 \
            -dict="dict/$t.dict" -artifact_prefix=build/ -max_len=$max_len -timeout=10 \
            "build/work-$t" "corpus/$t" >"build/run-$t.log" 2>&1; then
        echo "   found a crash or an invariant violation:"
        grep -E 'invariant broken|ERROR:|SUMMARY|Test unit written' "build/run-$t.log" | head -5
        status=1
    fi
    grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units' "build/run-$t.log" | tail -2 || true
done
exit $status
