#!/usr/bin/env bash
# Quick probes for trying one change at a time, in a minute instead of the full run's ten (bench/run.sh is the
# benchmark of record). Each starts the release service on a fresh database and drops it afterwards.
#
#   bench/probe.sh webhook   # N (default 40000) distinct webhook deliveries on 32 connections: throughput, p50, p99
#   bench/probe.sh memory    # the run's ingest phases (300 x 1,000 results, 10,000, 100,000): VmHWM after each
#                            # (WORKLOAD=junit: the same as JUnit XML files)
#   bench/probe.sh replay    # N builds (default 50000) by webhook, then `lathe replay` timed
#   bench/probe.sh rate      # N deliveries closed loop, then RATE/s (default half the closed loop's) open loop for
#                            # 20 s: p50, p99, p99.9, the seconds in which requests took over 50 ms, and how
#                            # busy the machine was (of both cores) during the open loop.
#                            # BEFORE_RATE="SQL" runs in the database between the two (e.g. "CHECKPOINT")
#
# Needs what bench/run.sh needs, and its release binaries (`bench/run.sh` builds them; or `cargo build --release
# -p lathe-api` and `cargo build --release --manifest-path bench/loadgen/Cargo.toml`). SVC_ENV adds environment
# variables to the service (e.g. SVC_ENV="MIMALLOC_PURGE_DELAY=10").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LATHE=$TARGET/release/lathe
LOADGEN=$TARGET/release/loadgen
FIXTURE=tests/fixtures/azure-devops/build.complete.msdocs-2022.json
PG=(psql -X -q -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" -U "${PGUSER:-postgres}")
KIND=${1:?usage: bench/probe.sh webhook|memory|replay}
[[ -x $LATHE && -x $LOADGEN ]] || { echo "build the release binaries first (see the header)" >&2; exit 2; }

DB=lathe_probe_$$
URL="postgres://${PGUSER:-postgres}@${PGHOST:-127.0.0.1}:${PGPORT:-5432}/$DB"
PORT=$((20000 + RANDOM % 20000))
SERVICE=
cleanup() {
    [[ -n $SERVICE ]] && kill "$SERVICE" 2>/dev/null && wait "$SERVICE" 2>/dev/null
    "${PG[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"${PG[@]}" -d postgres -c "CREATE DATABASE $DB"
DATABASE_URL=$URL "$LATHE" migrate >/dev/null 2>&1
KEY=$(DATABASE_URL=$URL "$LATHE" org create --name Probe --json 2>/dev/null | jq -r .apiKey)
# shellcheck disable=SC2086
env ${SVC_ENV:-} LATHE_BIND=127.0.0.1:$PORT LATHE_RATE_LIMIT_PER_MINUTE=100000000 \
    LATHE_INGEST_MAX_BYTES=$((64 * 1024 * 1024)) RUST_LOG=warn DATABASE_URL=$URL "$LATHE" serve >"${SERVICE_LOG:-/dev/null}" 2>&1 &
SERVICE=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
LOAD=("$LOADGEN" --url "http://127.0.0.1:$PORT" --key "$KEY")
webhooks() { # count
    "${LOAD[@]}" --concurrency 32 --requests "$1" --duration 600 --expect '"outcome":"queued"' \
        webhook --template "$FIXTURE" --first-id 1 | jq -c '{requests, errors, ok_rps, p50: .latency_ms.p50, p99: .latency_ms.p99}'
}
memory() { echo "$1: $(grep -E 'VmHWM|VmRSS' "/proc/$SERVICE/status" | tr -s ' \t' ' ' | tr '\n' ' ')"; }

case $KIND in
webhook)
    webhooks "${N:-40000}"
    ;;
memory)
    memory start
    webhooks 20000 >/dev/null; memory webhook
    "${LOAD[@]}" --concurrency 4 --requests 300 --duration 120 --expect '"outcome"' "${WORKLOAD:-ingest}" \
        --results 1000 >/dev/null
    memory "${WORKLOAD:-ingest}-1000"
    for results in 10000 100000; do
        "${LOAD[@]}" --concurrency 1 --requests 1 --duration 120 --timeout 120 --expect '"outcome"' \
            "${WORKLOAD:-ingest}" --results "$results" >/dev/null
        memory "${WORKLOAD:-ingest}-$results"
    done
    ;;
rate)
    MAX=$(webhooks "${N:-60000}" | tee /dev/stderr | jq -r '.ok_rps | floor')
    [[ -n ${BEFORE_RATE:-} ]] && "${PG[@]}" -d "$DB" -c "$BEFORE_RATE" >/dev/null
    echo "open loop from $(date -u +%H:%M:%S.%N)" >&2
    read -r _ u0 n0 s0 i0 w0 _ < /proc/stat
    "${LOAD[@]}" --rate "${RATE:-$((MAX / 2))}" --requests $((${RATE:-$((MAX / 2))} * 20)) --duration 25 \
        --expect '"outcome":"queued"' webhook --template "$FIXTURE" --first-id 10000001 |
        jq -c '{requests, errors, ok_rps, p50: .latency_ms.p50, p99: .latency_ms.p99, p999: .latency_ms.p999,
                over_50ms_by_second}'
    read -r _ u1 n1 s1 i1 w1 _ < /proc/stat
    echo "machine busy during the open loop: $(( 100 * ((u1+n1+s1)-(u0+n0+s0)) / ((u1+n1+s1+i1+w1)-(u0+n0+s0+i0+w0)) )) %" >&2
    ;;
replay)
    webhooks "${N:-50000}"
    kill "$SERVICE"; wait "$SERVICE" 2>/dev/null || true; SERVICE=
    /usr/bin/time -f "replay: wall %e s, user %U s, sys %S s, max RSS %M KB" \
        env DATABASE_URL="$URL" RUST_LOG=warn "$LATHE" replay 2>&1 | tail -2
    ;;
*)
    echo "usage: bench/probe.sh webhook|memory|replay" >&2; exit 2
    ;;
esac
