#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
#
# Per-frame cost of processor=analyze against videoanalyse on the same
# 1920x1080 I420 frames, in one run, alternating: no element (the source's
# own cost, subtracted), videoanalyse, parallelfilter workers=1, workers=2.
# Prints medians and the ratios net of the source's own cost.
# The source loops over two different raw frames (the moving ball, written
# once to a temporary directory; reading them back from the page cache is
# the source's cost): with one repeated frame (imagefreeze), motion would
# compare a frame with its own memory.
# Run from the repository root after `cargo build --release`.
# N=frames per run (300), R=rounds (7).
set -euo pipefail
export GST_PLUGIN_PATH=${GST_PLUGIN_PATH:-$PWD/target/release}
N=${N:-300}; R=${R:-7}
DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT
CAPS=video/x-raw,format=I420,width=1920,height=1080,framerate=30/1
gst-launch-1.0 -q videotestsrc num-buffers=2 pattern=ball ! $CAPS ! multifilesink location="$DIR/frame%d.yuv"
SRC="multifilesrc location=$DIR/frame%d.yuv loop=true stop-index=1 num-buffers=$N ! rawvideoparse format=i420 width=1920 height=1080 framerate=30/1"
run() {
  local s e; s=$(date +%s%N)
  gst-launch-1.0 -q $SRC ! $1 fakesink || { echo "failed: $1" >&2; return 1; }
  e=$(date +%s%N); echo $(( (e - s) / N ))
}
declare -A T
for r in $(seq $R); do
  for k in none va pf1 pf2; do
    case $k in none) el="";; va) el="videoanalyse !";; pf1) el="parallelfilter processor=analyze workers=1 !";; pf2) el="parallelfilter processor=analyze workers=2 !";; esac
    T[$k]+="$(run "$el") "
  done
done
med() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
n=$(echo ${T[none]} | med); va=$(echo ${T[va]} | med); p1=$(echo ${T[pf1]} | med); p2=$(echo ${T[pf2]} | med)
echo "median ns/frame (wall, $R rounds x $N frames): none $n videoanalyse $va pf-w1 $p1 pf-w2 $p2"
awk -v n=$n -v va=$va -v p1=$p1 -v p2=$p2 'BEGIN{printf "net of source: videoanalyse %.3f ms, analyze w1 %.3f ms (ratio %.2f), w2 %.3f ms (ratio %.2f)\n",(va-n)/1e6,(p1-n)/1e6,(p1-n)/(va-n),(p2-n)/1e6,(p2-n)/(va-n)}'
