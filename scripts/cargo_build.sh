#!/bin/sh
# SPDX-License-Identifier: MPL-2.0
#
# Called by meson.build: builds the plugin with cargo (release profile) and
# copies it to where meson expects its output.
#
# usage: cargo_build.sh CARGO SOURCE_DIR CARGO_TARGET_DIR OUTPUT
set -eu

cargo=$1
source_dir=$2
target_dir=$3
output=$4

"$cargo" build --release --lib \
    --manifest-path "$source_dir/Cargo.toml" \
    --target-dir "$target_dir"

# Copy then rename, so a reader never sees a half-written plugin.
cp -f "$target_dir/release/libgstparallel.so" "$output.tmp"
mv -f "$output.tmp" "$output"
