#!/usr/bin/env bash
# The console in headless Chromium (Debian's `chromium` + `chromium-driver`), driven over WebDriver with curl:
#
#     bench/console.sh <service URL> <API key> <output JSON file>
#
# Signs in on a fresh profile, then loads the Releases page RUNS times (a full page load each, session cookie
# kept) and takes the time from navigation start until the first page of the Build Queue is on screen (the
# console's `lathe:queue-shown` performance mark). Also sums the bytes transferred on the very first load of the
# console (the sign-in page and every asset, as the browser received them, i.e. compressed), and separately the
# whole first visit including the API calls of the Releases page. Writes
#   {"queue_ms": [..], "queue_ms_median": n, "first_load_bytes": n, "first_visit_bytes": n}
set -Eeuo pipefail
URL=$1 KEY=$2 OUT_FILE=$3
RUNS=${BENCH_CONSOLE_RUNS:-5}
command -v chromedriver >/dev/null || { echo "bench/console.sh needs chromedriver (apt-get install chromium chromium-driver)" >&2; exit 2; }
CHROMIUM=$(command -v chromium || command -v chromium-browser)

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PROFILE=$(mktemp -d)
chromedriver --port="$PORT" >/dev/null 2>&1 &
DRIVER_PID=$!
WD=http://127.0.0.1:$PORT
SESSION=
cleanup() {
    [[ -n $SESSION ]] && curl -s -X DELETE "$WD/session/$SESSION" >/dev/null || true
    kill "$DRIVER_PID" 2>/dev/null || true
    rm -rf "$PROFILE"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "$WD/status" >/dev/null && break; sleep 0.1; done

wd() { # method path [json]
    curl -sS -X "$1" "$WD/session/$SESSION$2" -H 'Content-Type: application/json' ${3:+-d "$3"}
}
js() { # script -> value
    wd POST /execute/sync "$(jq -cn --arg s "$1" '{script: $s, args: []}')" | jq -c '.value'
}
wait_js() { # script returning true when ready; 60 s at most
    for _ in $(seq 1 600); do [[ $(js "$1") == true ]] && return 0; sleep 0.1; done
    echo "bench/console.sh: timed out waiting for: $1" >&2; exit 2
}

SESSION=$(curl -sS -X POST "$WD/session" -H 'Content-Type: application/json' -d "$(jq -cn --arg bin "$CHROMIUM" --arg dir "$PROFILE" '
  {capabilities: {alwaysMatch: {browserName: "chrome", "goog:chromeOptions": {binary: $bin, args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", ("--user-data-dir=" + $dir), "--window-size=1280,800"]}}}}')" | jq -r '.value.sessionId')
[[ $SESSION != null ]] || { echo "bench/console.sh: Chromium did not start" >&2; exit 2; }

BYTES='return performance.getEntriesByType("navigation").concat(performance.getEntriesByType("resource"))
  .reduce((sum, e) => sum + e.transferSize, 0);'
ASSET_BYTES='return performance.getEntriesByType("navigation").concat(performance.getEntriesByType("resource"))
  .filter(e => !e.name.endsWith("/graphql") && !e.name.endsWith("/console/session"))
  .reduce((sum, e) => sum + e.transferSize, 0);'

wd POST /url "$(jq -cn --arg u "$URL/console/" '{url: $u}')" >/dev/null
wait_js 'return document.querySelector("input[name=key]") !== null;'
FIRST_LOAD=$(js "$ASSET_BYTES")
js "const k = document.querySelector('input[name=key]'); k.value = $(jq -cn --arg k "$KEY" '$k');
    k.closest('form').requestSubmit(); return true;" >/dev/null
wait_js 'return performance.getEntriesByName("lathe:queue-shown").length > 0;'
FIRST_VISIT=$(js "$BYTES")

TIMES=()
for _ in $(seq 1 "$RUNS"); do
    wd POST /url '{"url": "about:blank"}' >/dev/null
    wd POST /url "$(jq -cn --arg u "$URL/console/#/releases" '{url: $u}')" >/dev/null
    wait_js 'return performance.getEntriesByName("lathe:queue-shown").length > 0;'
    ROWS=$(js 'return document.querySelectorAll("section.queue tbody tr").length;')
    [[ $ROWS -gt 0 ]] || { echo "bench/console.sh: the queue page shows no builds" >&2; exit 2; }
    TIMES+=("$(js 'return Math.round(performance.getEntriesByName("lathe:queue-shown")[0].startTime);')")
done
MEDIAN=$(printf '%s\n' "${TIMES[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
jq -n --argjson times "$(printf '%s\n' "${TIMES[@]}" | jq -s .)" --argjson median "$MEDIAN" \
    --argjson first "$FIRST_LOAD" --argjson visit "$FIRST_VISIT" \
    '{queue_ms: $times, queue_ms_median: $median, first_load_bytes: $first, first_visit_bytes: $visit}' | tee "$OUT_FILE"
