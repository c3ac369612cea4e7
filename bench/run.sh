#!/usr/bin/env bash
# Lathe benchmark harness. One command, from anywhere in the checkout:
#
#     bench/run.sh
#
# Builds the service and the load generator (release), creates a fresh database on the local PostgreSQL, starts
# `lathe serve` on a free loopback port, measures the pgbench ceiling in that database, drives the service over
# HTTP with bench/loadgen (JSON and JUnit XML ingest), loads the console in headless Chromium (bench/console.sh),
# runs `lathe replay` over 1,000,000 events when this build has it, and prints a table
# with PASS/FAIL per target. It stops by itself (every step has a request count and a time limit) and always
# kills the service and drops its databases. Results and logs are kept in target/bench/<time>/.
# See docs/PERFORMANCE.md for what each figure means and the last recorded run.
#
# Knobs (environment; the defaults are the specified sizes, smaller values are for trying the harness out):
#   BENCH_QUEUE_ENTRIES=100000   webhook deliveries in the throughput phase (they become the pending queue)
#   BENCH_REPLAY_EVENTS=1000000  events in the event store that `lathe replay` rebuilds from
#   BENCH_CONCURRENCY=32         connections of the webhook phase and clients of the pgbench ceiling
#   BENCH_CEILING_SECONDS=20     BENCH_RATE_SECONDS=20   BENCH_QUEUE_READS=2000
#   BENCH_INGEST_CALLS=300       BENCH_INGEST_CONCURRENCY=4
#   BENCH_SUB_IDLE=990 BENCH_SUB_ACTIVE=10 BENCH_SUB_SECONDS=20   the subscription figure (6)
#   BENCH_ONLY_SUBSCRIPTIONS=1   only the webhook throughput phase and the subscription figure (with BENCH_QUEUE_ENTRIES
#                                small, a quick look at figure 6)
#   BENCH_SKIP_BUILD=1           use the binaries already in $CARGO_TARGET_DIR/release
#   BENCH_SEED_REPLAY=always     seed the replay database even when `lathe replay` is missing (tests the seed)
#   BENCH_STRICT=1               exit 1 when a target fails
#   PGHOST/PGPORT/PGUSER         the PostgreSQL server (default 127.0.0.1:5432, postgres)
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CONCURRENCY=${BENCH_CONCURRENCY:-32}
QUEUE_ENTRIES=${BENCH_QUEUE_ENTRIES:-100000}
REPLAY_EVENTS=${BENCH_REPLAY_EVENTS:-1000000}
CEILING_SECONDS=${BENCH_CEILING_SECONDS:-20}
RATE_SECONDS=${BENCH_RATE_SECONDS:-20}
QUEUE_READS=${BENCH_QUEUE_READS:-2000}
INGEST_CALLS=${BENCH_INGEST_CALLS:-300}
INGEST_CONCURRENCY=${BENCH_INGEST_CONCURRENCY:-4}
INGEST_RESULTS=1000
SUB_IDLE=${BENCH_SUB_IDLE:-990}
SUB_ACTIVE=${BENCH_SUB_ACTIVE:-10}
SUB_SECONDS=${BENCH_SUB_SECONDS:-20}
ONLY_SUBSCRIPTIONS=${BENCH_ONLY_SUBSCRIPTIONS:-}
WEBHOOK_MAX_SECONDS=420   # the throughput phase stops here even if not every delivery was sent
STEP_TIMEOUT=300          # seeding, replay

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target} CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
LATHE=$CARGO_TARGET_DIR/release/lathe
LOADGEN=$CARGO_TARGET_DIR/release/loadgen
FIXTURE=tests/fixtures/azure-devops/build.complete.msdocs-2022.json
TEMPLATE_BUILD_ID=2727068 # the fixture's own resource.id: the delivery whose events template the replay seed
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench/$STAMP}
DB=lathe_bench_$(date -u +%Y%m%d%H%M%S)_$$
REPLAY_DB=${DB}_replay
HZ=$(getconf CLK_TCK)
SERVICE_PID=
CHILD_PID=
mkdir -p "$OUT"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
db_url() { echo "postgres://$PGUSER@$PGHOST:$PGPORT/$1"; }
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
calc() { awk "BEGIN { print $* }"; }
# 1234567.8 -> 1,234,568
thousands() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) } print s r }'; }
fixed() { awk -v n="$1" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, n }'; }

stop_service() {
    [[ -n $SERVICE_PID ]] || return 0
    if kill -0 "$SERVICE_PID" 2>/dev/null; then
        kill -TERM "$SERVICE_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVICE_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$SERVICE_PID" 2>/dev/null || true
    fi
    wait "$SERVICE_PID" 2>/dev/null || true
    SERVICE_PID=
}

# Runs a long step in the background and waits for it, so that a signal to this script is handled at once (bash
# defers traps until a foreground command ends) and the step can be stopped with the rest.
child() {
    "$@" &
    CHILD_PID=$!
    local status=0
    wait "$CHILD_PID" || status=$?
    CHILD_PID=
    return "$status"
}

cleanup() {
    local status=$?
    trap - INT TERM
    if [[ -n $CHILD_PID ]]; then
        # The step and the process it wraps (loadgen under /usr/bin/time, psql or lathe under timeout), by id.
        kill -TERM $(ps -o pid= --ppid "$CHILD_PID" 2>/dev/null) "$CHILD_PID" 2>/dev/null || true
        wait "$CHILD_PID" 2>/dev/null || true
    fi
    [[ -z ${SUB_PID:-} ]] || kill -TERM "$SUB_PID" 2>/dev/null || true
    stop_service
    local dropped="databases dropped"
    for db in "$DB" "$REPLAY_DB"; do
        psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 \
            || dropped="COULD NOT DROP $DB (and ${DB}_replay): drop them by hand"
    done
    log "service stopped, $dropped; results and logs in $OUT"
    exit "$status"
}
trap 'log "stopped: \`$BASH_COMMAND\` failed (exit $?) at line $LINENO"' ERR
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    done
    return 1
}

# ---- diagnostics: CPU of the service, of PostgreSQL and of the machine; transactions and WAL per request -------
# PostgreSQL: every `postgres` process's own CPU plus what the postmaster reaped from exited backends.
# (`cat` fails when a process exits between the glob and the read; what it did read is enough.)
pg_ticks() { { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '$2 == "(postgres)" { s += $14 + $15 + $16 + $17 } END { print s + 0 }'; }
service_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVICE_PID/stat" 2>/dev/null || echo 0; }
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
db_counters() {
    # Exact at any moment, unlike pg_stat_database/pg_stat_wal, which backends flush up to 10 s late: the next
    # transaction id (one is assigned per writing transaction) and the WAL insert position, both server-wide.
    sql "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, pg_current_wal_lsn() - '0/0'::pg_lsn" | tr '|' ' '
}
declare -A SNAP
phase_begin() {
    read -r SNAP[xids] SNAP[wal] < <(db_counters)
    SNAP[svc]=$(service_ticks); SNAP[pg]=$(pg_ticks); SNAP[all]=$(machine_ticks); SNAP[t]=$(date +%s.%N)
}
DIAG=()
phase_end() { # name requests loadgen-run-name
    local svc pg all t xids wal hwm lg other
    svc=$(service_ticks); pg=$(pg_ticks); all=$(machine_ticks); t=$(date +%s.%N)
    read -r xids wal < <(db_counters)
    hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$SERVICE_PID/status" 2>/dev/null || echo 0)
    local seconds=$(calc "$t - ${SNAP[t]}") n=$(( $2 > 0 ? $2 : 1 ))
    lg=$(awk -v s="$seconds" '{ printf "%.0f", 100 * ($1 + $2) / s }' "$OUT/$3.loadgen-time")
    # Whatever else kept the CPUs busy: kernel work not charged to a process, other programs on the machine.
    other=$(calc "100 * (($all - ${SNAP[all]}) - ($svc - ${SNAP[svc]}) - ($pg - ${SNAP[pg]})) / $HZ / $seconds - $lg")
    DIAG+=("| $1 | $(thousands "$2") | $(fixed "$seconds") s | $(fixed "$(calc "100 * ($svc - ${SNAP[svc]}) / $HZ / $seconds")" 0) % \
| $(fixed "$(calc "100 * ($pg - ${SNAP[pg]}) / $HZ / $seconds")" 0) % | $lg % | $(fixed "$other" 0) % | $(fixed "$(calc "100 * ($all - ${SNAP[all]}) / $HZ / $seconds")" 0) % \
| $(fixed "$(calc "($xids - ${SNAP[xids]}) / $n")" 2) | $(fixed "$(calc "($wal - ${SNAP[wal]}) / 1024 / $n")" 1) | $(fixed "$(calc "$hwm / 1024")" 0) MB |")
}

# ---- load generator --------------------------------------------------------------------------------------------
loadgen() { # name, then loadgen arguments
    local name=$1; shift
    child /usr/bin/time -f '%U %S %M' -o "$OUT/$name.loadgen-time" "$LOADGEN" --url "$URL" "$@" >"$OUT/$name.json" \
        || die "loadgen $name failed (see $OUT/$name.json)"
    jq -c '{requests, errors, rps: (.throughput_rps * 10 | round / 10), p50: .latency_ms.p50, p99: .latency_ms.p99,
            first_error}' "$OUT/$name.json" | sed "s/^/[bench]   $name: /" >&2
}
field() { jq -r "$2" "$OUT/$1.json"; }

# ---- 6. subscriptions: SUB_IDLE + SUB_ACTIVE open while the webhook runs ------------------------------------------
# Idle subscriptions belong to ten organizations that receive no builds (dashboards of other tenants); active ones
# tail the delivery log of the organization the webhook delivers to and time each message. Throughput is compared
# closed loop, without and then with the subscriptions, for the same time; latency at half the measured rate.
subscribers() { # name, then loadgen subscribers arguments; runs in the background, writes $OUT/name.json
    local name=$1; shift
    rm -f "$OUT/$name.ready"
    "$LOADGEN" --url "$URL" --threads 1 subscribers --ready-file "$OUT/$name.ready" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log" &
    SUB_PID=$!
    for _ in $(seq 600); do
        [[ -f $OUT/$name.ready ]] && return 0
        kill -0 "$SUB_PID" 2>/dev/null || die "loadgen $name exited (see $OUT/$name.log)"
        sleep 0.1
    done
    die "loadgen $name did not open its subscriptions in 60 s"
}
subscription_figure() {
    local keys="" n
    for n in $(seq 10); do
        keys+="${keys:+,}$(DATABASE_URL=$(db_url "$DB") "$LATHE" org create --name "Idle $n" --json 2>>"$OUT/cli.log" | jq -r .apiKey)"
    done
    # Memory first, while no subscription has been opened yet in this process.
    log "subscriptions: latency at $RATE deliveries/s for $RATE_SECONDS s, memory per idle subscription"
    subscribers sub-latency --duration $((RATE_SECONDS + 8)) --active "$SUB_ACTIVE" --idle "$SUB_IDLE" \
        --idle-keys "$keys" --service-pid "$SERVICE_PID"
    loadgen sub-rate --rate "$RATE" --requests $((RATE * RATE_SECONDS)) --duration $((RATE_SECONDS + 5)) \
        --expect '"outcome":"queued"' webhook --template "$FIXTURE" --first-id 40000001
    wait "$SUB_PID" || die "loadgen sub-latency failed (see $OUT/sub-latency.log)"
    jq -c . "$OUT/sub-latency.json" | sed "s/^/[bench]   sub-latency: /" >&2
    log "subscriptions: webhook $CONCURRENCY connections for $SUB_SECONDS s without subscribers"
    loadgen sub-without --concurrency "$CONCURRENCY" --duration "$SUB_SECONDS" --expect '"outcome":"queued"' \
        webhook --template "$FIXTURE" --first-id 20000001
    log "subscriptions: the same with $SUB_IDLE idle + $SUB_ACTIVE active subscriptions"
    subscribers sub-throughput --duration $((SUB_SECONDS + 10)) --active "$SUB_ACTIVE" --idle "$SUB_IDLE" \
        --idle-keys "$keys"
    phase_begin
    loadgen sub-with --concurrency "$CONCURRENCY" --duration "$SUB_SECONDS" --expect '"outcome":"queued"' \
        webhook --template "$FIXTURE" --first-id 30000001
    phase_end "webhook, $CONCURRENCY connections, $((SUB_IDLE + SUB_ACTIVE)) subscriptions" "$(field sub-with .requests)" sub-with
    wait "$SUB_PID" || die "loadgen sub-throughput failed (see $OUT/sub-throughput.log)"
}

verdict() { # ok-condition (awk expression), errors
    if [[ ${2:-0} != 0 ]]; then echo "FAIL (errors)"; elif awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi
}
subscription_rows() { # the three rows of figure 6
    S_P99=$(field sub-latency .latency_ms.p99)
    S_WITH=$(field sub-with .ok_rps); S_WITHOUT=$(field sub-without .ok_rps)
    S_KB=$(field sub-latency .kb_per_idle_subscription)
    S_ERRORS=$(( $(field sub-with .errors) + $(field sub-rate .errors) + $(field sub-latency .missed) ))
    echo "| 6 | Receipt → message p99, $SUB_ACTIVE of $((SUB_IDLE + SUB_ACTIVE)) subscriptions, webhook at $RATE/s ($(thousands "$(field sub-latency .messages)") messages) | $(fixed "$S_P99") ms | — | < 100 ms | $(verdict "$S_P99 < 100" "$S_ERRORS") |"
    echo "| 6 | Webhook throughput with those subscriptions open, vs without ($(thousands "$S_WITHOUT")/s, ${SUB_SECONDS} s each) | $(thousands "$S_WITH") deliveries/s | $(fixed "$(calc "100 * $S_WITH / $S_WITHOUT")" 0) % | ≥ 90 % | $(verdict "$S_WITH >= 0.9 * $S_WITHOUT" "$(field sub-with .errors)") |"
    echo "| 6 | Service memory per idle subscription (RSS before/after opening $SUB_IDLE) | $(fixed "$S_KB") KB | — | < 50 KB | $(verdict "$S_KB < 50") |"
}

# ---- build -----------------------------------------------------------------------------------------------------
if [[ ${BENCH_SKIP_BUILD:-} != 1 ]]; then
    log "building the service and the load generator (release, $CARGO_BUILD_JOBS jobs, one build at a time)"
    cargo build --release --quiet -p lathe-api
    cargo build --release --quiet --manifest-path bench/loadgen/Cargo.toml
fi
[[ -x $LATHE && -x $LOADGEN ]] || die "missing $LATHE or $LOADGEN (build them or unset BENCH_SKIP_BUILD)"

# The machine is shared: note how busy it was before we started (others' builds and tests disturb every figure).
idle_start=$(machine_ticks); sleep 2
BUSY_BEFORE=$(calc "100 * ($(machine_ticks) - $idle_start) / $HZ / 2")
log "machine busy before the run: $(fixed "$BUSY_BEFORE" 0) % of $(($(nproc) * 100)) %"

# ---- database, organization, service ---------------------------------------------------------------------------
log "database $DB"
DATABASE_URL=$(db_url "$DB") "$LATHE" migrate >/dev/null 2>>"$OUT/cli.log"
KEY=$(DATABASE_URL=$(db_url "$DB") "$LATHE" org create --name Bench --json 2>>"$OUT/cli.log" | jq -r .apiKey)
[[ $KEY == pt_live_* ]] || die "lathe org create printed no key (see $OUT/cli.log)"
export LOADGEN_KEY=$KEY

PORT=${BENCH_PORT:-$(free_port)}
URL=http://127.0.0.1:$PORT
RUST_LOG=${BENCH_RUST_LOG:-warn} LATHE_BIND=127.0.0.1:$PORT LATHE_INGEST_MAX_BYTES=$((64 * 1024 * 1024)) \
    LATHE_RATE_LIMIT_PER_MINUTE=100000000 \
    DATABASE_URL=$(db_url "$DB") "$LATHE" serve >"$OUT/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 100); do
    curl -sf --max-time 1 "$URL/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVICE_PID" 2>/dev/null || die "the service exited (see $OUT/service.log)"
    sleep 0.2
done
curl -sf --max-time 1 "$URL/readyz" >/dev/null || die "the service is not ready after 20 s"
log "service pid $SERVICE_PID on $URL (RUST_LOG=${BENCH_RUST_LOG:-warn}, LATHE_INGEST_MAX_BYTES=64 MiB)"

# One delivery of the fixture as it is: its events are the payload of the ceiling and the replay seed's template.
outcome=$(curl -sS --max-time 10 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    --data-binary @"$FIXTURE" "$URL/api/webhooks/azure-devops" | jq -r .outcome)
[[ $outcome == queued ]] || die "the template delivery was answered '$outcome', not 'queued'"
TEMPLATE_ID=$(sql "SELECT aggregate_id FROM events WHERE event_type = 'BuildReceived'
                   AND payload -> 'BuildReceived' ->> 'source_key' LIKE '%/$TEMPLATE_BUILD_ID'")

# ---- ceiling: pgbench, one event insert + one view upsert per transaction, same concurrency, same database -------
log "ceiling: pgbench, $CONCURRENCY clients, ${CEILING_SECONDS} s"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f bench/ceiling-setup.sql >/dev/null 2>&1
sql "CHECKPOINT"
payload=$(sql "SELECT payload FROM events WHERE aggregate_id = '$TEMPLATE_ID' AND sequence = 1")
metadata=$(sql "SELECT metadata FROM events WHERE aggregate_id = '$TEMPLATE_ID' AND sequence = 1")
child pgbench -n -M prepared -c "$CONCURRENCY" -j 2 -T "$CEILING_SECONDS" -D payload="$payload" -D metadata="$metadata" \
    -f bench/ceiling.sql "$DB" >"$OUT/ceiling.txt" 2>&1 || die "pgbench failed (see $OUT/ceiling.txt)"
CEILING_TPS=$(grep -Po 'tps = \K[0-9.]+' "$OUT/ceiling.txt")
CEILING_MS=$(grep -Po 'latency average = \K[0-9.]+' "$OUT/ceiling.txt")
log "  ceiling: $(thousands "$CEILING_TPS") TPS, mean latency $CEILING_MS ms"
sql "DROP TABLE bench_events, bench_view"
sql "CHECKPOINT"

# ---- 1. webhook intake: distinct deliveries, closed loop; they fill the queue ------------------------------------
WEBHOOK_N=$((QUEUE_ENTRIES - 1)) # the template delivery is the first pending entry
log "webhook intake: $(thousands "$WEBHOOK_N") distinct deliveries, $CONCURRENCY connections"
phase_begin
loadgen webhook --concurrency "$CONCURRENCY" --requests "$WEBHOOK_N" --duration "$WEBHOOK_MAX_SECONDS" \
    --expect '"outcome":"queued"' webhook --template "$FIXTURE" --first-id 1
phase_end "webhook, $CONCURRENCY connections" "$(field webhook .requests)" webhook
WEBHOOK_RPS=$(field webhook .ok_rps)
PENDING=$(sql "SET search_path = read, public; SELECT count(*) FROM builds WHERE queue_status = 'pending'" | tail -1)
log "  pending queue entries: $(thousands "$PENDING")"

if [[ $ONLY_SUBSCRIPTIONS == 1 ]]; then
    RATE=$(awk -v r="$WEBHOOK_RPS" 'BEGIN { printf "%d", r / 2 }'); ((RATE >= 1)) || RATE=1
    subscription_figure
    { echo "| # | Figure | Measured | vs | Target | Result |"; echo "|---|---|---|---|---|---|"; subscription_rows; } \
        | tee "$OUT/table.md"
    exit 0
fi

# ---- 3. queue reads: first page of buildQueue, one connection, client-side latency on loopback -------------------
QUERY='{ buildQueue(first: 20) { edges { node { id buildName status } } } }'
log "queue reads: $QUEUE_READS x buildQueue(first: 20) over $(thousands "$PENDING") pending entries, 1 connection"
EDGES=$(curl -sS --max-time 10 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "$(jq -cn --arg q "$QUERY" '{query: $q}')" "$URL/graphql" | jq '.data.buildQueue.edges | length')
loadgen queue-warmup --concurrency 1 --requests 100 --duration 30 --expect '"buildName"' graphql --query "$QUERY"
phase_begin
loadgen queue --concurrency 1 --requests "$QUEUE_READS" --duration 60 --expect '"buildName"' graphql --query "$QUERY"
phase_end "buildQueue reads, 1 connection" "$(field queue .requests)" queue

# ---- 7. the console in headless Chromium: time to the first queue page over the same pending entries, bytes -------
CONSOLE_STATUS=skipped
if command -v chromedriver >/dev/null && { command -v chromium || command -v chromium-browser; } >/dev/null; then
    log "console: Releases page in headless Chromium over $(thousands "$PENDING") pending entries"
    if bench/console.sh "$URL" "$KEY" "$OUT/console.json" >/dev/null 2>"$OUT/console.log"; then
        CONSOLE_STATUS=ran
        log "  first queue page: median $(jq .queue_ms_median "$OUT/console.json") ms; first load $(jq .first_load_bytes "$OUT/console.json") bytes"
    else
        CONSOLE_STATUS=failed
        log "  bench/console.sh failed (see $OUT/console.log)"
    fi
else
    log "console: skipped (install chromium and chromium-driver to measure it)"
fi

# ---- 1b. webhook latency at half the measured maximum rate (open loop) -------------------------------------------
RATE=$(awk -v r="$WEBHOOK_RPS" 'BEGIN { printf "%d", r / 2 }')
((RATE >= 1)) || RATE=1
log "webhook latency: $RATE deliveries/s (50% of $(fixed "$WEBHOOK_RPS" 0)) for $RATE_SECONDS s, open loop"
phase_begin
loadgen webhook-rate --rate "$RATE" --requests $((RATE * RATE_SECONDS)) --duration $((RATE_SECONDS + 5)) \
    --expect '"outcome":"queued"' webhook --template "$FIXTURE" --first-id 10000001
phase_end "webhook, $RATE/s open loop" "$(field webhook-rate .requests)" webhook-rate

# ---- 2. results ingest --------------------------------------------------------------------------------------------
count_results() { sql "SET search_path = read, public; SELECT count(*) FROM test_results" | tail -1; }
before=$(count_results)
log "ingest: $INGEST_CALLS calls of $INGEST_RESULTS results, $INGEST_CONCURRENCY connections"
phase_begin
loadgen ingest --concurrency "$INGEST_CONCURRENCY" --requests "$INGEST_CALLS" --duration 120 --expect '"outcome"' \
    ingest --results "$INGEST_RESULTS"
phase_end "ingest 1,000-result calls, $INGEST_CONCURRENCY connections" "$(field ingest .requests)" ingest
STORED=$(($(count_results) - before))
INGEST_RESULTS_PER_S=$(calc "$STORED / $(field ingest .elapsed_s)")
log "  results stored: $(thousands "$STORED") ($(thousands "$INGEST_RESULTS_PER_S")/s)"
for n in 10000 100000; do
    log "ingest: one call of $(thousands $n) results"
    phase_begin
    loadgen "ingest-$n" --concurrency 1 --requests 1 --duration 120 --timeout 120 --expect '"outcome"' \
        ingest --results "$n"
    phase_end "ingest one $(thousands $n)-result call" 1 "ingest-$n"
done

# ---- 2x. results ingest as JUnit XML files (the same results, as a report file in the body) ----------------------
before=$(count_results)
log "ingest JUnit XML: $INGEST_CALLS files of $INGEST_RESULTS test cases, $INGEST_CONCURRENCY connections"
phase_begin
loadgen junit --concurrency "$INGEST_CONCURRENCY" --requests "$INGEST_CALLS" --duration 120 --expect '"outcome"' \
    junit --results "$INGEST_RESULTS"
phase_end "JUnit XML 1,000-case files, $INGEST_CONCURRENCY connections" "$(field junit .requests)" junit
STORED_XML=$(($(count_results) - before))
JUNIT_RESULTS_PER_S=$(calc "$STORED_XML / $(field junit .elapsed_s)")
log "  results stored: $(thousands "$STORED_XML") ($(thousands "$JUNIT_RESULTS_PER_S")/s)"
log "ingest JUnit XML: one file of 100,000 test cases"
phase_begin
loadgen junit-100000 --concurrency 1 --requests 1 --duration 120 --timeout 120 --expect '"outcome"' \
    junit --results 100000
phase_end "JUnit XML one 100,000-case file" 1 junit-100000

# ---- 5. memory: the service's peak RSS over the whole run ----------------------------------------------------------
PEAK_KB=$(awk '/VmHWM/ { print $2 }' "/proc/$SERVICE_PID/status")
log "service peak RSS (VmHWM): $((PEAK_KB / 1024)) MB"
subscription_figure
log "stopping the service"
stop_service

# ---- 4. rebuild: lathe replay over a synthetic event store of REPLAY_EVENTS events ----------------------------------
REPLAY_STATUS=skip REPLAY_NOTE="" REPLAY_RATE=0
if "$LATHE" --help | grep -qE '^[[:space:]]+replay([[:space:]]|$)'; then HAVE_REPLAY=1; else HAVE_REPLAY=0; fi
if ((HAVE_REPLAY)) || [[ ${BENCH_SEED_REPLAY:-} == always ]]; then
    log "replay: seeding $REPLAY_DB with $(thousands "$REPLAY_EVENTS") events (synthetic copies of the template build)"
    DATABASE_URL=$(db_url "$REPLAY_DB") "$LATHE" migrate >/dev/null 2>>"$OUT/cli.log"
    DATABASE_URL=$(db_url "$REPLAY_DB") "$LATHE" org create --name Replay --json >/dev/null 2>>"$OUT/cli.log"
    template=$(sql "SELECT json_agg(e ORDER BY sequence) FROM events e
                    WHERE aggregate_type = 'BuildQueue' AND aggregate_id = '$TEMPLATE_ID'")
    existing=$(psql -X -At -d "$REPLAY_DB" -c "SELECT count(*) FROM events")
    steps=$(jq length <<<"$template")
    streams=$(((REPLAY_EVENTS - existing) / steps))
    seed_start=$(date +%s.%N)
    child timeout "$STEP_TIMEOUT" psql -X -q -v ON_ERROR_STOP=1 -d "$REPLAY_DB" -v streams="$streams" \
        -v template="$template" -f bench/replay-seed.sql >"$OUT/replay-seed.log" 2>&1 \
        || die "seeding the replay database failed (see $OUT/replay-seed.log)"
    psql -X -q -d "$REPLAY_DB" -c "VACUUM ANALYZE events" -c "CHECKPOINT" >/dev/null
    REPLAY_N=$(psql -X -At -d "$REPLAY_DB" -c "SELECT count(*) FROM events")
    log "  $(thousands "$REPLAY_N") events ($(thousands "$streams") synthetic builds) in $(fixed "$(calc "$(date +%s.%N) - $seed_start")") s"
fi
if ((HAVE_REPLAY)); then
    log "replay: lathe replay"
    replay_start=$(date +%s.%N)
    if RUST_LOG=${BENCH_RUST_LOG:-warn} DATABASE_URL=$(db_url "$REPLAY_DB") child \
        /usr/bin/time -f '%e %M' -o "$OUT/replay.time" timeout "$STEP_TIMEOUT" "$LATHE" replay >"$OUT/replay.log" 2>&1; then
        REPLAY_SECONDS=$(calc "$(date +%s.%N) - $replay_start")
        REPLAY_RATE=$(calc "$REPLAY_N / $REPLAY_SECONDS")
        REPLAY_STATUS=ran
        # Sanity check: every synthetic build is a row of the rebuilt builds read model.
        rebuilt=$(psql -X -At -d "$REPLAY_DB" -c "SET search_path = read, public" \
            -c "SELECT count(*) FROM builds" 2>/dev/null | tail -1 || echo "?")
        [[ $rebuilt == "$streams" ]] || REPLAY_STATUS=unchecked
        REPLAY_NOTE="$(fixed "$REPLAY_SECONDS") s for $(thousands "$REPLAY_N") events; builds rows after: $(thousands "$rebuilt") (expected $(thousands "$streams")); replay peak RSS $(( $(awk '{ print $2 }' "$OUT/replay.time") / 1024 )) MB"
    else
        REPLAY_STATUS=failed
        REPLAY_NOTE="lathe replay failed or timed out after ${STEP_TIMEOUT} s: $(tail -c 300 "$OUT/replay.log" | tr '\n' ' ')"
    fi
    log "  $REPLAY_NOTE"
else
    REPLAY_NOTE="not available: this build of lathe has no \`replay\` subcommand (\`lathe --help\`); figure skipped"
    log "replay: $REPLAY_NOTE"
fi

# ---- the table -----------------------------------------------------------------------------------------------------
x_tps() { echo "$(fixed "$(calc "$1 / $CEILING_TPS")" 2)× ceiling TPS"; }
x_lat() { echo "$(fixed "$(calc "$1 / $CEILING_MS")" 1)× ceiling latency"; }

W_P99=$(field webhook-rate .latency_ms.p99)
Q_P50=$(field queue .latency_ms.p50)
I10=$(calc "$(field ingest-10000 .latency_ms.max) / 1000")
I100=$(calc "$(field ingest-100000 .latency_ms.max) / 1000")
X100=$(calc "$(field junit-100000 .latency_ms.max) / 1000")
case $REPLAY_STATUS in
    ran) R_MEASURED="$(thousands "$REPLAY_RATE") events/s"; R_X=$(x_tps "$REPLAY_RATE")
         R_VERDICT=$(verdict "$REPLAY_RATE >= 50000") ;;
    unchecked) R_MEASURED="$(thousands "$REPLAY_RATE") events/s"; R_X=$(x_tps "$REPLAY_RATE")
         R_VERDICT="FAIL (builds rows ≠ builds seeded)" ;;
    failed) R_MEASURED="failed"; R_X="—"; R_VERDICT=FAIL ;;
    *) R_MEASURED="not available"; R_X="—"; R_VERDICT=SKIP ;;
esac

# The kernel's writeback settings decide when table pages PostgreSQL left in the page cache reach the disk, in one
# burst (see docs/PERFORMANCE.md, fourth session): printed, never changed.
writeback_settings() {
    local bytes ratio expire
    bytes=$(cat /proc/sys/vm/dirty_background_bytes 2>/dev/null || echo 0)
    ratio=$(cat /proc/sys/vm/dirty_background_ratio 2>/dev/null || echo 0)
    expire=$(cat /proc/sys/vm/dirty_expire_centisecs 2>/dev/null || echo 0)
    if [[ $bytes != 0 ]]; then
        echo "kernel writeback from $((bytes / 1048576)) MB dirty or after $((expire / 100)) s"
    else
        echo "kernel writeback from $ratio % of memory dirty or after $((expire / 100)) s"
    fi
}

COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':(exclude)bench' ':(exclude)docs' 2>/dev/null || echo "+changes")
{
    echo "Run $STAMP, commit $COMMIT, \`bench/run.sh\`"
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
        "$(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)," \
        "PostgreSQL $(sql 'SHOW server_version' | cut -d' ' -f1); service, PostgreSQL and load generator on the same machine;" \
        "$(fixed "$BUSY_BEFORE" 0) % busy just before the run; $(writeback_settings)"
    echo "Ceiling (pgbench -M prepared, $CONCURRENCY clients, ${CEILING_SECONDS} s, 1 event insert + 1 view upsert per transaction):" \
        "$(thousands "$CEILING_TPS") TPS, mean latency $CEILING_MS ms"
    echo
    echo "| # | Figure | Measured | vs ceiling | Target | Result |"
    echo "|---|---|---|---|---|---|"
    echo "| 1 | Webhook intake, $(thousands "$(field webhook .requests)") distinct deliveries, $CONCURRENCY connections | $(thousands "$WEBHOOK_RPS") deliveries/s | $(x_tps "$WEBHOOK_RPS") | ≥ 0.50× ceiling TPS | $(verdict "$WEBHOOK_RPS >= 0.5 * $CEILING_TPS" "$(field webhook .errors)") |"
    echo "| 1 | Webhook p99 at 50% of that ($RATE/s open loop, ${RATE_SECONDS} s, $(thousands "$(field webhook-rate .requests)") deliveries) | $(fixed "$W_P99") ms | $(x_lat "$W_P99") | < 50 ms | $(verdict "$W_P99 < 50" "$(field webhook-rate .errors)") |"
    echo "| 2 | Ingest, $INGEST_CALLS calls × $INGEST_RESULTS results, $INGEST_CONCURRENCY connections | $(thousands "$INGEST_RESULTS_PER_S") results/s | $(x_tps "$INGEST_RESULTS_PER_S") | ≥ 100,000 results/s | $(verdict "$INGEST_RESULTS_PER_S >= 100000" "$(field ingest .errors)") |"
    echo "| 2 | Ingest, one call of 10,000 results | $(fixed "$I10" 2) s | $(x_lat "$I10 * 1000") | < 1 s | $(verdict "$I10 < 1" "$(field ingest-10000 .errors)") |"
    echo "| 2 | Ingest, one call of 100,000 results | $(fixed "$I100" 2) s | $(x_lat "$I100 * 1000") | < 10 s | $(verdict "$I100 < 10" "$(field ingest-100000 .errors)") |"
    echo "| 2x | Ingest JUnit XML, $INGEST_CALLS files × $INGEST_RESULTS cases, $INGEST_CONCURRENCY connections | $(thousands "$JUNIT_RESULTS_PER_S") results/s | $(x_tps "$JUNIT_RESULTS_PER_S") | ≥ 100,000 results/s | $(verdict "$JUNIT_RESULTS_PER_S >= 100000" "$(field junit .errors)") |"
    echo "| 2x | Ingest JUnit XML, one file of 100,000 cases ($(thousands "$(field junit-100000 .body_bytes)") bytes) | $(fixed "$X100" 2) s | $(x_lat "$X100 * 1000") | < 10 s | $(verdict "$X100 < 10" "$(field junit-100000 .errors)") |"
    echo "| 3 | \`buildQueue(first: 20)\` p50, $(thousands "$PENDING") pending, 1 connection, client-side on loopback | $(fixed "$Q_P50" 2) ms | $(x_lat "$Q_P50") | < 5 ms | $(verdict "$Q_P50 < 5 && $PENDING >= $QUEUE_ENTRIES && $EDGES == 20" "$(field queue .errors)") |"
    echo "| 4 | \`lathe replay\`, $(thousands "${REPLAY_N:-$REPLAY_EVENTS}") events (synthetic seed) | $R_MEASURED | $R_X | ≥ 50,000 events/s | $R_VERDICT |"
    echo "| 5 | Service peak RSS (VmHWM) over the whole run | $((PEAK_KB / 1024)) MB | — | < 150 MB | $(verdict "$PEAK_KB < 150 * 1024") |"
    subscription_rows
    case $CONSOLE_STATUS in
        ran) echo "| 7 | Console: Releases page until its first Build Queue page is shown, $(thousands "$PENDING") pending, headless Chromium (median of $(jq '.queue_ms | length' "$OUT/console.json") loads: $(jq -c .queue_ms "$OUT/console.json") ms) | $(jq .queue_ms_median "$OUT/console.json") ms | — | < 1 s | $(verdict "$(jq .queue_ms_median "$OUT/console.json") < 1000") |"
             echo "| 7 | Console: bytes transferred on first load (page and assets, gzipped; with the Releases page's API calls $(thousands "$(jq .first_visit_bytes "$OUT/console.json")")) | $(thousands "$(jq .first_load_bytes "$OUT/console.json")") B | — | < 200 KB | $(verdict "$(jq .first_load_bytes "$OUT/console.json") < 200 * 1024") |" ;;
        failed) echo "| 7 | Console in headless Chromium | failed (see console.log) | — | < 1 s, < 200 KB | FAIL |" ;;
        *) echo "| 7 | Console in headless Chromium | not measured: chromium or chromedriver missing | — | < 1 s, < 200 KB | SKIP |" ;;
    esac
    echo
    echo "Other percentiles: webhook closed loop p50 $(fixed "$(field webhook .latency_ms.p50)") / p99 $(fixed "$(field webhook .latency_ms.p99)") ms;" \
        "at $RATE/s p50 $(fixed "$(field webhook-rate .latency_ms.p50)") / p99.9 $(fixed "$(field webhook-rate .latency_ms.p999)") ms" \
        "(requests over 50 ms by second of the phase: $(jq -c '.over_50ms_by_second // {}' "$OUT/webhook-rate.json"));" \
        "queue p99 $(fixed "$(field queue .latency_ms.p99)" 2) ms; ingest 1,000-result call p50 $(fixed "$(field ingest .latency_ms.p50)") / p99 $(fixed "$(field ingest .latency_ms.p99)") ms;" \
        "JUnit XML 1,000-case file ($(thousands "$(field junit .body_bytes)") bytes) p50 $(fixed "$(field junit .latency_ms.p50)") / p99 $(fixed "$(field junit .latency_ms.p99)") ms." \
        "Replay: $REPLAY_NOTE"
    echo
    echo "| Phase (diagnostics) | Requests | Wall | Service CPU | PostgreSQL CPU | Loadgen CPU | Other CPU | Machine busy (of 200 %) | Writing transactions / request | WAL KB / request | Service RSS peak so far |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${DIAG[@]}"
} | tee "$OUT/table.md"

if [[ ${BENCH_STRICT:-} == 1 ]] && grep -q '| FAIL' "$OUT/table.md"; then exit 1; fi
