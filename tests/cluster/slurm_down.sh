#!/usr/bin/env bash
# Stops the test cluster that tests/cluster/slurm_up.sh STATE_DIR started: each daemon by the PID it recorded in
# STATE_DIR/pids, the last started first (SIGTERM, then SIGKILL after 15 s). Jobs still running are cancelled first.
set -uo pipefail
STATE=$(realpath -m "${1:?usage: slurm_down.sh STATE_DIR}")
[ -f "$STATE/pids" ] || exit 0
if [ -f "$STATE/slurm.conf" ] && grep -q '^slurmctld ' "$STATE/pids"; then
    SLURM_CONF="$STATE/slurm.conf" timeout 10 scancel --full --quiet --user="$(id -un)" >/dev/null 2>&1 || true
fi
tac "$STATE/pids" | while read -r name pid; do
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 75); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$name ($pid) did not stop on SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
done
: >"$STATE/pids"
