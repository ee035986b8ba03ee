#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
#
# Checks scripts/deps.sh against stub commands (rustup, cargo, curl,
# apt-get, dpkg-query, pkg-config), so nothing is installed and the
# machine's Rust is not touched:
# - an old default cargo: the stable toolchain is used for the run only,
#   never made the default;
# - an old cargo and no rustup: rustup comes without a default toolchain
#   and leaves the shell profile alone;
# - a recent default cargo: rustup is not called;
# - ensure_deps installs the Python examples' packages too.
#
# Usage: tests/deps/run.sh   (DEPS_SH=path checks another copy of deps.sh)
set -euo pipefail

cd "$(dirname "$0")/../.."
deps_sh=$(realpath "${DEPS_SH:-scripts/deps.sh}")
tmp=$(mktemp -d)
[ -n "$tmp" ] && [ -d "$tmp" ] || exit 1
trap 'rm -rf "$tmp"' EXIT
failures=0
passed=0
check() {
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "ok: $name"
    else
        failures=$((failures + 1))
        echo "FAILED: $name"
    fi
}

# The stubs log their arguments to $tmp/log. cargo is a rustup proxy whose
# version depends on RUSTUP_TOOLCHAIN, the default being $STUB_DEFAULT_CARGO.
# rustup is in its own directory, on PATH only when $STUB_RUSTUP is set;
# curl "downloads" an installer that puts rustup and cargo into
# $HOME/.cargo/bin. Every package is installed except those in $STUB_MISSING.
stubs=$tmp/bin
rustup_dir=$tmp/rustup-bin
mkdir -p "$stubs" "$rustup_dir"
printf '%s\n' '#!/bin/sh' 'echo "rustup $*" >>"$STUB_LOG"' >"$rustup_dir/rustup"
printf '%s\n' '#!/bin/sh' \
    'if [ "$1" = --version ]; then' \
    '    if [ "${RUSTUP_TOOLCHAIN:-}" = stable ]; then' \
    '        echo "cargo 1.95.0 (stub)"' \
    '    else' \
    '        echo "cargo $STUB_DEFAULT_CARGO (stub)"' \
    '    fi' \
    'fi' >"$stubs/cargo"
printf '%s\n' '#!/bin/sh' 'while [ "$1" != -o ]; do shift; done' \
    'cp "$STUB_INSTALLER" "$2"' >"$stubs/curl"
printf '%s\n' 'echo "rustup-init $*" >>"$STUB_LOG"' \
    'mkdir -p "$HOME/.cargo/bin"' \
    'cp "$STUB_RUSTUP_DIR/rustup" "$STUB_CARGO" "$HOME/.cargo/bin/"' \
    "echo 'PATH=\"\$HOME/.cargo/bin:\$PATH\"' >\"\$HOME/.cargo/env\"" >"$tmp/installer"
printf '%s\n' '#!/bin/sh' 'echo "apt-get $*" >>"$STUB_LOG"' >"$stubs/apt-get"
printf '%s\n' '#!/bin/sh' 'for pkg; do :; done' \
    'case " $STUB_MISSING " in *" $pkg "*) exit 1 ;; esac' \
    "printf 'install ok installed'" >"$stubs/dpkg-query"
printf '%s\n' '#!/bin/sh' 'exit 0' >"$stubs/pkg-config"
chmod +x "$stubs"/* "$rustup_dir/rustup"

# Runs "$@" in a shell that sourced deps.sh, with only the stubs and the
# system's tools on PATH and an empty HOME; output in $tmp/out.
in_deps_shell() {
    : >"$tmp/log"
    rm -rf "$tmp/home"
    mkdir "$tmp/home"
    local path=$stubs:/usr/bin:/bin
    [ -z "${STUB_RUSTUP:-}" ] || path=$rustup_dir:$path
    env -i HOME="$tmp/home" PATH="$path" STUB_LOG="$tmp/log" \
        STUB_DEFAULT_CARGO="$STUB_DEFAULT_CARGO" STUB_MISSING="${STUB_MISSING:-}" \
        STUB_RUSTUP_DIR="$rustup_dir" STUB_CARGO="$stubs/cargo" \
        STUB_INSTALLER="$tmp/installer" \
        bash -c 'set -euo pipefail; . "$1"; shift; "$@"' deps "$deps_sh" "$@" \
        >"$tmp/out" 2>&1
}

STUB_RUSTUP=1
STUB_DEFAULT_CARGO=1.80.0
# eval: cargo must run in the shell where ensure_rust ran.
check "old default cargo: ensure_rust succeeds" \
    in_deps_shell eval 'ensure_rust && cargo --version'
check "old default cargo: the run's cargo is stable's" \
    grep -q '^cargo 1.95.0' "$tmp/out"
check "old default cargo: the stable toolchain is installed" \
    grep -q '^rustup toolchain install stable' "$tmp/log"
check "old default cargo: the default toolchain is not changed" \
    bash -c "! grep -q '^rustup default' '$tmp/log'"

STUB_DEFAULT_CARGO=1.95.0
check "recent default cargo: ensure_rust succeeds" in_deps_shell ensure_rust
check "recent default cargo: rustup is not called" \
    bash -c "! grep -q '^rustup' '$tmp/log'"

unset STUB_RUSTUP
STUB_DEFAULT_CARGO=1.80.0
check "old cargo, no rustup: ensure_rust succeeds" \
    in_deps_shell eval 'ensure_rust && cargo --version'
check "old cargo, no rustup: the run's cargo is stable's" \
    grep -q '^cargo 1.95.0' "$tmp/out"
check "old cargo, no rustup: rustup has no default and leaves the profile alone" \
    grep -Eq '^rustup-init .*--default-toolchain none --no-modify-path' "$tmp/log"

STUB_DEFAULT_CARGO=1.95.0
STUB_MISSING="python3-gst-1.0 gir1.2-gst-plugins-base-1.0"
check "ensure_deps succeeds" in_deps_shell ensure_deps
check "ensure_deps installs the missing Python packages" \
    grep -q '^apt-get install .*gir1.2-gst-plugins-base-1.0 python3-gst-1.0' "$tmp/log"
unset STUB_MISSING

echo "deps.sh: $passed passed, $failures failed"
[ "$failures" -eq 0 ]
