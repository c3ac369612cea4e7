#!/usr/bin/env bash
# Issue 13's hostile requests against a running service, with what each costs: the 50-alias nested-page GraphQL
# query, one alias of it, four unauthenticated 100 MB GraphQL bodies (declared and chunked), and the process's RSS
# before and after. Starts `lathe serve` on a fresh database and drops it afterwards.
#
#   bench/hostile.sh            # the release binary (`cargo build --release -p lathe-api` first)
#   LATHE=target/debug/lathe bench/hostile.sh
#
# Needs psql, jq, curl and python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LATHE=${LATHE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/lathe}
[[ -x $LATHE ]] || { echo "no $LATHE: build it first (see the header)" >&2; exit 2; }
PG=(psql -X -q -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" -U "${PGUSER:-postgres}")
DB=lathe_hostile_$$
PORT=${PORT:-18480}
export DATABASE_URL="postgres://${PGUSER:-postgres}@${PGHOST:-127.0.0.1}:${PGPORT:-5432}/$DB"
export RUST_LOG=warn LATHE_BIND=127.0.0.1:$PORT
BODY=$(mktemp)
cleanup() {
    [[ -n ${PID:-} ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    "${PG[@]}" -c "DROP DATABASE IF EXISTS $DB" postgres || true
    rm -f "$BODY"
}
trap cleanup EXIT

KEY=$("$LATHE" org create --name Hostile --json | jq -r .apiKey)
"$LATHE" serve & PID=$!
for _ in $(seq 1 50); do curl -sf "localhost:$PORT/healthz" >/dev/null && break; sleep 0.2; done
rss() { awk '/VmRSS/ { printf "%.1f MB", $2 / 1024 }' "/proc/$PID/status"; }
gql() {
    curl -s -o "$BODY.out" -w "HTTP %{http_code} in %{time_total} s" "localhost:$PORT/graphql" \
        -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$(jq -nc --arg q "$1" '{query: $q}')"
    echo " — $(jq -r '.errors[0].message // "answered"' "$BODY.out" | cut -c1-120)"
}
echo "RSS at start: $(rss)"
PAGE='releases(first:100){edges{node{id name builds(first:100){edges{node{id buildName testResults(first:100){edges{node{id title status}}}}}}}}}'
echo "50 aliases of the nested pages: $(gql "{$(for i in $(seq 1 50); do printf 'a%s: %s ' "$i" "$PAGE"; done)}")"
echo "one alias:                      $(gql "{$PAGE}")"
head -c 100000000 /dev/zero | tr '\0' a > "$BODY"
for mode in declared chunked; do
    extra=()
    [[ $mode == chunked ]] && extra=(-H 'Transfer-Encoding: chunked')
    pids=()
    for _ in 1 2 3 4; do
        curl -s -o /dev/null -w "  HTTP %{http_code} in %{time_total} s\n" "localhost:$PORT/graphql" \
            -H 'Content-Type: application/json' "${extra[@]}" --data-binary @"$BODY" & pids+=($!)
    done
    echo "4 unauthenticated 100 MB bodies, length $mode:"
    wait "${pids[@]}"
    echo "  RSS after: $(rss)"
done
