#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
#
# Interoperability of processor=remote with a real Open Inference Protocol
# server: MLServer (PyPI) with the tiny runtime in tests/interop/model.
# Installs MLServer into a virtualenv under target/ (nothing cached outside
# the workspace), starts two servers on free ports, runs the ignored tests
# of tests/interop.rs: frames one per request and in batches over REST
# and over gRPC, a list mixing both, then the
# first server is killed mid-stream, then with both stopped every frame
# gets on-error.
#
# Usage: tests/interop/run.sh   (from anywhere; needs python3 with venv)
set -euo pipefail

cd "$(dirname "$0")/../.."
root=$PWD
venv=${PARALLELFILTER_INTEROP_VENV:-$root/target/interop/venv}
mlserver_version=1.7.1
say() { printf '==> %s\n' "$*" >&2; }

start=$SECONDS
if ! "$venv/bin/mlserver" --version 2>/dev/null | grep -q "$mlserver_version"; then
    say "installing mlserver $mlserver_version into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    PIP_CACHE_DIR=/nonexistent "$venv/bin/pip" install --no-cache-dir --quiet --disable-pip-version-check \
        "mlserver==$mlserver_version"
fi
say "mlserver ready in $((SECONDS - start)) s"

logs=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$logs"
}
trap cleanup EXIT

# Six free ports: HTTP, gRPC and metrics for each server.
read -r -a ports < <("$venv/bin/python" - <<'PY'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

start_server() {
    local http=$1 grpc=$2 metrics=$3 log=$4
    (
        cd "$root/tests/interop/model"
        MLSERVER_HOST=127.0.0.1 MLSERVER_HTTP_PORT=$http MLSERVER_GRPC_PORT=$grpc \
            MLSERVER_METRICS_PORT=$metrics exec "$venv/bin/mlserver" start . >"$log" 2>&1
    ) &
    pids+=($!)
}

wait_ready() {
    local url=$1 log=$2
    "$venv/bin/python" - "$url" <<'PY' || { cat "$log" >&2; return 1; }
import sys, time, urllib.request
url = sys.argv[1] + "/v2/models/test-model/ready"
deadline = time.time() + 120
while time.time() < deadline:
    try:
        if urllib.request.urlopen(url, timeout=2).status == 200:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit("not ready within 120 s: " + url)
PY
}

say "starting two MLServer instances"
t=$SECONDS
start_server "${ports[0]}" "${ports[1]}" "${ports[2]}" "$logs/a.log"
start_server "${ports[3]}" "${ports[4]}" "${ports[5]}" "$logs/b.log"
a=http://127.0.0.1:${ports[0]}
b=http://127.0.0.1:${ports[3]}
wait_ready "$a" "$logs/a.log"
wait_ready "$b" "$logs/b.log"
say "servers ready in $((SECONDS - t)) s: $a $b"

t=$SECONDS
PARALLELFILTER_OIP_SERVERS=$a,$b \
    PARALLELFILTER_OIP_GRPC_SERVERS=grpc://127.0.0.1:${ports[1]},grpc://127.0.0.1:${ports[4]} \
    cargo test --test interop -- --ignored --exact \
    rest_frames rest_batches grpc_frames grpc_batches mixed_rest_and_grpc --nocapture
PARALLELFILTER_OIP_SERVERS=$a,$b PARALLELFILTER_OIP_KILL_PID=${pids[0]} \
    cargo test --test interop -- --ignored --exact one_server_killed_mid_stream --nocapture
kill -9 "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
PARALLELFILTER_OIP_SERVERS=$a,$b \
    cargo test --test interop -- --ignored --exact all_servers_down --nocapture
say "interop tests took $((SECONDS - t)) s, $((SECONDS - start)) s in all"
