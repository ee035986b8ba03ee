#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
#
# processor=filter speed: gaussianblur at 1280x720, serial against
# parallelfilter filter=gaussianblur at workers=1 and workers=2, run
# alternating in one go; prints the median time of each and the ratios.
# The source is one frame repeated by imagefreeze, so it costs little.
#
#   scripts/filter-speed.sh [ROUNDS] [FRAMES]     (default 7 rounds, 120 frames)
#
# Times are gst-launch's own "Execution ended after" (PLAYING to EOS), so
# process start-up and plugin loading are not counted.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-7}
FRAMES=${2:-120}

cargo build --release --lib --quiet
export GST_PLUGIN_PATH=$PWD/target/release

SRC="videotestsrc num-buffers=1 ! video/x-raw,format=AYUV,width=1280,height=720,framerate=30/1 ! imagefreeze num-buffers=$FRAMES"
declare -A CASES=(
    [serial]="gaussianblur"
    [workers1]="parallelfilter workers=1 filter=gaussianblur"
    [workers2]="parallelfilter workers=2 filter=gaussianblur"
)
ORDER=(serial workers1 workers2)

CPU_FILE=$(mktemp)
trap 'rm -f "$CPU_FILE"' EXIT

# Seconds from PLAYING to EOS, as gst-launch reports it (H:MM:SS.nnnnnnnnn),
# then the process's CPU seconds (user + system).
run_once() {
    # shellcheck disable=SC2086
    /usr/bin/time -f '%U %S' -o "$CPU_FILE" gst-launch-1.0 $SRC ! $1 ! fakesink 2>&1 |
        sed -n 's/^Execution ended after \([0-9]*\):\([0-9]*\):\([0-9.]*\)$/\1 \2 \3/p' |
        awk '{ printf "%.4f ", $1 * 3600 + $2 * 60 + $3 }'
    awk '{ printf "%.2f\n", $1 + $2 }' "$CPU_FILE"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
minimum() { sort -n | head -1; }

declare -A TIMES CPU
for ((r = 1; r <= ROUNDS; r++)); do
    for c in "${ORDER[@]}"; do
        read -r t cpu < <(run_once "${CASES[$c]}")
        TIMES[$c]+="$t "
        CPU[$c]+="$cpu "
        printf 'round %d %-8s %s s wall, %s s CPU\n' "$r" "$c" "$t" "$cpu"
    done
done

echo "nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg), $FRAMES frames, $ROUNDS rounds"
declare -A MED MIN
for c in "${ORDER[@]}"; do
    MED[$c]=$(tr ' ' '\n' <<<"${TIMES[$c]}" | grep . | median)
    MIN[$c]=$(tr ' ' '\n' <<<"${TIMES[$c]}" | grep . | minimum)
    cpu=$(tr ' ' '\n' <<<"${CPU[$c]}" | grep . | median)
    printf '%-8s median %s s (%s fps), best %s s, CPU %s s : %s\n' "$c" "${MED[$c]}" \
        "$(awk -v t="${MED[$c]}" -v n="$FRAMES" 'BEGIN { printf "%.1f", n / t }')" \
        "${MIN[$c]}" "$cpu" "${CASES[$c]}"
done
ratios() {
    awk -v what="$1" -v s="$2" -v a="$3" -v b="$4" 'BEGIN {
        printf "%s: workers=1 / serial time %.3f (%+.1f%%), speedup workers=2 vs serial %.2fx\n",
            what, a / s, (a / s - 1) * 100, s / b
    }'
}
ratios medians "${MED[serial]}" "${MED[workers1]}" "${MED[workers2]}"
# On a loaded machine the best run of each is the least disturbed one.
ratios "best runs" "${MIN[serial]}" "${MIN[workers1]}" "${MIN[workers2]}"
