#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
#
# Runs the parallelfilter demo (examples/demo.rs), installing what is missing
# first. Arguments go to the demo, e.g. ./demo.sh --frames 500 --workers 64 --quiet
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
ensure_deps
exec cargo run --release --example demo -- "$@"
