#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, one after another, in one process (one core), and appends one line
# per target to fuzz/runs.log:
#   <UTC time> target=T seconds=S execs=N corpus=C new_inputs=I crashes=K exit=E
# execs is libFuzzer's stat::number_of_executed_units (-print_final_stats=1); corpus is the corpus size libFuzzer
# reports at the end (seeds + fuzz/runs/T); new_inputs the files in fuzz/runs/T; crashes the reproducers this
# run wrote to fuzz/artifacts/T. A target's full output is fuzz/runs/T.log.
#
# Usage: fuzz/run-all.sh SECONDS [TARGET...]   (from anywhere; needs cargo-fuzz)
set -uo pipefail

secs=${1:?usage: fuzz/run-all.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")/.." || exit 2
# cargo fuzz passes nightly-only flags to rustc; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
# Address sanitizer by default; FUZZ_SANITIZER=none if it does not link on this machine.
sanitizer=${FUZZ_SANITIZER:-address}

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# Build every target once, then run the binaries: each run's SECONDS are spent fuzzing, and every target runs
# the same build even if the sources change meanwhile.
cargo fuzz build -s "$sanitizer" || exit 2
# The fuzz crate is a member of the main workspace, so its binaries land in the workspace's target directory.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin_dir="$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release"

for t in "${targets[@]}"; do
    mkdir -p "fuzz/runs/$t" "fuzz/artifacts/$t"
    stamp=$(mktemp)
    log="fuzz/runs/$t.log"
    # -jobs=1 runs one fuzzing process; libFuzzer writes its output to fuzz-0.log in the working directory.
    workdir=$(mktemp -d)
    root=$PWD
    (
        cd "$workdir" &&
            "$bin_dir/$t" "$root/fuzz/runs/$t" "$root/fuzz/corpus/$t" \
                -max_total_time="$secs" -jobs=1 -workers=1 -print_final_stats=1 \
                -artifact_prefix="$root/fuzz/artifacts/$t/"
    ) >"$log" 2>&1
    status=$?
    cat "$workdir"/fuzz-*.log >>"$log" 2>/dev/null
    rm -rf "$workdir"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$')
    corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*$')
    new_inputs=$(find "fuzz/runs/$t" -type f | wc -l)
    crashes=$(find "fuzz/artifacts/$t" -type f -newer "$stamp" | wc -l)
    rm -f "$stamp"
    printf '%s target=%s seconds=%s execs=%s corpus=%s new_inputs=%s crashes=%s exit=%s\n' \
        "$(date -u +%FT%TZ)" "$t" "$secs" "${execs:-?}" "${corpus:-?}" "$new_inputs" "$crashes" "$status" \
        >>fuzz/runs.log
done
