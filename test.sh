#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
#
# Runs the test suite (unit, integration and doc tests), installing what is
# missing first. Arguments go to cargo test, e.g. ./test.sh --test flush
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
ensure_deps
exec cargo test "$@"
