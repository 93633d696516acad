#!/usr/bin/env bash
# Schemathesis against a running hookd: every operation of openapi.json, every check,
# once with the admin token and once with a tenant API key, about a minute each.
# A run fails on any request the document calls valid that hookd refuses, any it calls
# invalid that hookd accepts, any answer that does not match the document, and any 5xx.
#
# Uses the debug binary `cargo build` made. Traffic stays on this machine: Schemathesis
# talks to hookd on loopback, and hookd, which will be asked to deliver to whatever
# endpoint and token URLs Schemathesis invents, sends every outbound call through
# `delivery.proxy = http://127.0.0.1:9`, where nothing listens, so each one fails at the
# proxy without leaving the machine. Through a proxy hookd resolves no endpoint names
# (the proxy would), so what hookd answers does not depend on DNS either. A watcher
# (ss, every 0.2 s) fails the run if it sees hookd hold a TCP or UDP socket to a
# non-loopback peer.
set -euo pipefail
cd "$(dirname "$0")/.."

# Time budget of each run, in seconds (two runs). SCHEMATHESIS_REPORT_DIR, when set,
# receives the JUnit reports and hookd's log.
MAX_TIME=${SCHEMATHESIS_MAX_TIME:-55}
BIN=${CARGO_TARGET_DIR:-target}/debug/hookd
[[ -x $BIN ]] || { echo "error: $BIN is missing; run cargo build --locked first" >&2; exit 1; }

WORK=$(mktemp -d)
HOOKD_PID=""
WATCH_PID=""
cleanup() {
    [[ -n $WATCH_PID ]] && kill "$WATCH_PID" 2>/dev/null || true
    if [[ -n $HOOKD_PID ]] && kill -0 "$HOOKD_PID" 2>/dev/null; then
        kill -TERM "$HOOKD_PID" 2>/dev/null || true
        wait "$HOOKD_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" init "$WORK/hookd" >/dev/null
CONFIG=$WORK/hookd/hookd.toml
CA=$WORK/hookd/tls/ca.pem
ADMIN_TOKEN=$(tr -d '\n' <"$WORK/hookd/admin.token")
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# Loopback listeners; deliveries only into the dead proxy, allow_networks left empty.
# The [[event_types]] catalog is dropped: with an open catalog any well-formed type is
# valid, which is what a document that cannot know an operator's catalog can promise.
python3 - "$CONFIG" "$PORT" <<'EOF'
import re, sys
path, port = sys.argv[1], sys.argv[2]
text = open(path).read()
text = re.split(r"(?m)^\[\[event_types\]\]", text)[0]
text = re.sub(r'(?m)^listen = .*$', f'listen = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:0"', text)
# hookd init writes no [delivery] section; if it ever does, merge by hand rather than
# risk a second proxy or allow_networks taking effect.
assert "[delivery]" not in text and "allow_networks" not in text, "init now writes [delivery]"
text += '\n[delivery]\nproxy = "http://127.0.0.1:9"\nallow_networks = []\n'
open(path, "w").write(text)
EOF
"$BIN" check-config --config "$CONFIG" >/dev/null

"$BIN" serve --config "$CONFIG" >"$WORK/hookd.log" 2>&1 &
HOOKD_PID=$!
BASE=https://localhost:$PORT
for _ in $(seq 300); do
    curl -sf --cacert "$CA" "$BASE/readyz" >/dev/null 2>&1 && break
    kill -0 "$HOOKD_PID" 2>/dev/null || { cat "$WORK/hookd.log" >&2; exit 1; }
    sleep 0.1
done
curl -sf --cacert "$CA" "$BASE/readyz" >/dev/null

# Every socket hookd holds must have a loopback peer (or none, for listeners).
watch_sockets() {
    while kill -0 "$HOOKD_PID" 2>/dev/null; do
        ss -Htunap 2>/dev/null | grep -F "pid=$HOOKD_PID," | awk '{print $6}' |
            grep -Ev '^(127\.[0-9.]+|\[::1\]|\[::ffff:127\.[0-9.]+\]|0\.0\.0\.0|\*|\[::\]):' \
                >>"$WORK/escaped" || true
        sleep 0.2
    done
}
watch_sockets &
WATCH_PID=$!

api() {
    curl -sS --fail-with-body --cacert "$CA" -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'content-type: application/json' "$@"
}
api -X POST "$BASE/v1/admin/entities" -d '{"id": "schemathesis", "name": "Schemathesis tenant"}' >/dev/null
TENANT_KEY=$(api -X POST "$BASE/v1/admin/api-keys" -d '{"entityId": "schemathesis",
    "name": "schemathesis", "scopes": ["events:write", "subscriptions:read", "subscriptions:write", "portal:write"]}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["key"])')

run() {
    local who=$1 token=$2
    echo "== schemathesis as $who"
    local started=$SECONDS status=0
    schemathesis --config-file .ci/schemathesis.toml run openapi.json \
        --url "$BASE" \
        --tls-verify "$CA" \
        --header "Authorization: Bearer $token" \
        --checks all \
        --max-time "$MAX_TIME" \
        --request-timeout 30 \
        --generation-database none \
        --no-color \
        --report junit --report-junit-path "${SCHEMATHESIS_REPORT_DIR:-$WORK}/schemathesis-$who.xml" ||
        status=$?
    echo "== schemathesis as $who: exit $status after $((SECONDS - started)) s"
    return "$status"
}
# The tenant first: the admin run may revoke any key it lists, the tenant's too.
failed=0
run tenant "$TENANT_KEY" || failed=1
run admin "$ADMIN_TOKEN" || failed=1

kill -0 "$HOOKD_PID" 2>/dev/null || { echo "error: hookd died during the runs" >&2; failed=1; }
if [[ -n ${SCHEMATHESIS_REPORT_DIR:-} ]]; then
    cp "$WORK/hookd.log" "$SCHEMATHESIS_REPORT_DIR/hookd.log"
fi
if grep -Eq 'panicked|ERROR' "$WORK/hookd.log"; then
    echo "error: hookd logged a panic or an error:" >&2
    grep -E 'panicked|ERROR' "$WORK/hookd.log" | head -20 >&2
    failed=1
fi
kill "$WATCH_PID" 2>/dev/null || true
wait "$WATCH_PID" 2>/dev/null || true
WATCH_PID=""
if [[ -s $WORK/escaped ]]; then
    echo "error: hookd connected beyond loopback:" >&2
    sort -u "$WORK/escaped" >&2
    failed=1
fi
exit "$failed"
