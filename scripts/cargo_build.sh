#!/bin/sh
# SPDX-License-Identifier: MPL-2.0
#
# Called by meson.build: builds the plugin with cargo (release profile) and
# copies it, stripped, to where meson expects its output.
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

# Copy then rename, so a reader never sees a half-written plugin. The copy
# meson installs has no symbol table, as distributions ship plugins
# (target/release keeps one for profilers).
plugin=$target_dir/release/libgstparallel.so
if command -v objcopy >/dev/null 2>&1; then
    objcopy --strip-unneeded "$plugin" "$output.tmp"
else
    echo "cargo_build.sh: objcopy not found (binutils): the plugin is not stripped" >&2
    cp -f "$plugin" "$output.tmp"
fi
mv -f "$output.tmp" "$output"
