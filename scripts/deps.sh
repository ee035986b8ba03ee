# shellcheck shell=bash
# SPDX-License-Identifier: MPL-2.0
#
# Installs what building and running parallelfilter needs, and only what is
# missing: GStreamer development packages and tools and the Python examples'
# packages (apt), and Rust (rustup's stable toolchain, for these scripts
# only) when cargo is missing or older than the crate's rust-version.
#
# Sourced by demo.sh, test.sh and .ci/run; call `ensure_deps`, and
# `ensure_apt_packages PKG...` for anything else.
# Set PARALLELFILTER_NO_INSTALL=1 to only check and report.

DEPS_APT_PACKAGES=(
    libgstreamer1.0-dev
    libgstreamer-plugins-base1.0-dev
    gstreamer1.0-tools
    gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad
    pkg-config
    build-essential
)

# What the Python examples (examples/python) need: PyGObject, the
# GStreamer typelibs (GstApp is in plugins-base) and gst-python's overrides,
# which make buffer maps writable from Python.
DEPS_PYTHON_APT_PACKAGES=(
    python3-gi
    gir1.2-gstreamer-1.0
    gir1.2-gst-plugins-base-1.0
    python3-gst-1.0
)

# The crate's rust-version (Cargo.toml).
DEPS_MIN_RUST=1.92
# The GStreamer the crate's v1_22 feature needs.
DEPS_MIN_GSTREAMER=1.22

deps_say() { printf '==> %s\n' "$*" >&2; }

# Runs a command as root: directly when we are root, else through sudo.
deps_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        deps_say "need root to run: $* (no sudo found); run it as root and retry"
        return 1
    fi
}

deps_pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ensure_apt_packages PKG...: installs the packages that are not installed.
ensure_apt_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        deps_say "not a Debian/Ubuntu system: please make sure these (or your distribution's equivalents) are installed: $*"
        return 0
    fi
    local missing=() pkg
    for pkg in "$@"; do
        deps_pkg_installed "$pkg" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    if [ -n "${PARALLELFILTER_NO_INSTALL:-}" ]; then
        deps_say "missing packages (PARALLELFILTER_NO_INSTALL is set, not installing): ${missing[*]}"
        return 1
    fi
    deps_say "installing missing packages with apt-get: ${missing[*]}"
    deps_as_root apt-get update
    deps_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
}

# Prints cargo's version as MAJOR.MINOR, or nothing when there is no cargo.
deps_cargo_version() {
    command -v cargo >/dev/null 2>&1 || return 0
    cargo --version 2>/dev/null | sed -n 's/^cargo \([0-9]*\.[0-9]*\).*/\1/p'
}

# True when version $1 (MAJOR.MINOR) is at least $2.
deps_version_ge() {
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# Installs rustup into $HOME/.cargo. $1 is the version of the cargo already
# on PATH, empty when there is none: an older cargo stays the user's (no
# default toolchain, no change to the shell profile); without one, this is
# rustup's usual install, so cargo is on PATH in new shells.
deps_install_rustup() {
    local options=(-y --profile minimal --component rustfmt --component clippy)
    if [ -n "$1" ]; then
        options+=(--default-toolchain none --no-modify-path)
    else
        options+=(--default-toolchain stable)
    fi
    deps_say "installing rustup into $HOME/.cargo (see https://rustup.rs)"
    ensure_apt_packages curl ca-certificates
    local installer
    installer=$(mktemp)
    if ! curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs -o "$installer"; then
        rm -f "$installer"
        deps_say "cannot download rustup from https://sh.rustup.rs: install Rust >= $DEPS_MIN_RUST yourself and retry"
        return 1
    fi
    if ! sh "$installer" "${options[@]}"; then
        rm -f "$installer"
        deps_say "rustup failed: install Rust >= $DEPS_MIN_RUST yourself and retry"
        return 1
    fi
    rm -f "$installer"
    if [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
}

# ensure_rust: cargo >= DEPS_MIN_RUST for this shell and what it starts.
# When the default cargo is older or missing, this uses rustup's stable
# toolchain through an exported RUSTUP_TOOLCHAIN=stable (what `cargo +stable`
# does), which also reaches meson and nested scripts; the user's default
# toolchain is never changed.
ensure_rust() {
    # A rustup install from an earlier run may not be on PATH yet.
    if [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    local version
    version=$(deps_cargo_version)
    if [ -n "$version" ] && deps_version_ge "$version" "$DEPS_MIN_RUST"; then
        return 0
    fi
    if [ -n "$version" ]; then
        deps_say "cargo $version is older than the $DEPS_MIN_RUST this crate needs"
    else
        deps_say "cargo not found"
    fi
    if [ -n "${PARALLELFILTER_NO_INSTALL:-}" ]; then
        deps_say "PARALLELFILTER_NO_INSTALL is set: install Rust >= $DEPS_MIN_RUST (https://rustup.rs) and retry"
        return 1
    fi
    if ! command -v rustup >/dev/null 2>&1; then
        deps_install_rustup "$version" || return 1
    fi
    deps_say "installing or updating rustup's stable toolchain (your default toolchain stays as it is)"
    rustup toolchain install stable --profile minimal --component rustfmt --component clippy
    # rustup's cargo first on PATH, on the stable toolchain: for this script
    # and its children only.
    PATH="$(dirname "$(command -v rustup)"):$PATH"
    export PATH RUSTUP_TOOLCHAIN=stable
    version=$(deps_cargo_version)
    if [ -z "$version" ] || ! deps_version_ge "$version" "$DEPS_MIN_RUST"; then
        deps_say "still no cargo >= $DEPS_MIN_RUST on PATH (found: ${version:-none})"
        return 1
    fi
    deps_say "using cargo $version (rustup's stable toolchain, for this run only)"
}

# The crate builds against GStreamer >= 1.22 (Debian 12, Ubuntu 23.04 and
# newer): say so clearly instead of failing deep in a -sys crate.
ensure_gstreamer_version() {
    if ! pkg-config --atleast-version="$DEPS_MIN_GSTREAMER" gstreamer-1.0; then
        deps_say "GStreamer $(pkg-config --modversion gstreamer-1.0 2>/dev/null || echo '(none)') found; parallelfilter needs >= $DEPS_MIN_GSTREAMER (Debian 12, Ubuntu 23.04 or newer)"
        return 1
    fi
}

# ensure_deps: the GStreamer packages, the Python examples' packages (they
# are small, and docs/embedding.md's Python section should work after ./demo.sh or
# ./test.sh), and Rust.
ensure_deps() {
    ensure_apt_packages "${DEPS_APT_PACKAGES[@]}" "${DEPS_PYTHON_APT_PACKAGES[@]}"
    ensure_gstreamer_version
    ensure_rust
}
