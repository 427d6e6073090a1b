#!/usr/bin/env bash
# End-to-end test of the live agent (issue 4): two network namespaces joined by a veth, the TDS
# test responder in "server" (one instance per scenario, ports 1433-1439), real clients (FreeTDS
# tsql, python-tds) in "client", `tdswatch run` capturing on the server's veth, and a real
# Prometheus server scraping it every second. After a scripted mix of handshakes, PromQL queries
# must return the exact expected counts per label set, and `tdswatch analyze --format prometheus`
# over a tcpdump capture of the same veth must give the same counts.
#
# Needs root, iproute2, tcpdump, prometheus, tsql (freetds-bin), openssl, python3 with python-tds
# and pyOpenSSL: tests/run.sh installs them. Bounded in time (every step has a deadline, and a
# watchdog ends the run after 100 s once the binaries are built); namespaces, processes and files
# are removed on every exit path.
# Usage: tests/e2e/prometheus.sh   (from anywhere; TDSWATCH_E2E_KEEP=1 keeps the work directory)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
here=$root/tests/e2e

fail() { echo "e2e: FAIL: $*" >&2; exit 1; }
say() { echo "e2e: $*" >&2; }

[ "$(id -u)" -eq 0 ] || fail "needs root (network namespaces, capture): run it as root, as CI does"
for tool in ip tcpdump prometheus tsql openssl python3 timeout; do
    command -v "$tool" >/dev/null || fail "$tool is missing: tests/run.sh installs it"
done
python3 -c 'import pytds, OpenSSL' 2>/dev/null ||
    fail "python-tds / pyOpenSSL are missing: tests/run.sh installs them (pip install python-tds pyOpenSSL)"

say "building tdswatch and tds-responder (debug)"
cargo build -q --locked -p tdswatch -p tds-responder
target=${CARGO_TARGET_DIR:-$root/target}/debug
tdswatch=$target/tdswatch
responder=$target/tds-responder

# Names unique to this run (interface names: 15 bytes at most).
tag="e2e$$"
tag=${tag:0:10}
sns="${tag}s"
cns="${tag}c"
sif="${tag}S"
cif="${tag}C"
work=$(mktemp -d /tmp/tdswatch-e2e.XXXXXX)
pids=()
watchdog=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    ip netns del "$sns" 2>/dev/null || true
    ip netns del "$cns" 2>/dev/null || true
    [ -z "$watchdog" ] || kill "$watchdog" 2>/dev/null || true
    if [ "$rc" -ne 0 ]; then
        for f in "$work"/*.log; do
            [ -f "$f" ] || continue
            echo "---- $(basename "$f") (last 30 lines)" >&2
            tail -n 30 "$f" >&2
        done
    fi
    if [ "${TDSWATCH_E2E_KEEP:-}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# The whole run is bounded: a watchdog ends it through the cleanup trap after 100 s (bash runs
# the trap once the step in progress ends; every step has its own limit of 20 s at most).
(
    sleep 100 </dev/null >/dev/null 2>&1 &
    s=$!
    trap 'kill $s 2>/dev/null; exit 0' TERM
    wait $s && { echo "e2e: FAIL: time limit (100 s) reached" >&2; kill -TERM $$; }
) &
watchdog=$!

# Waits up to $1 seconds for the command after it to succeed.
wait_until() {
    local limit=$1; shift
    local end=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}

# Runs a command in the background in namespace $1, logging to $work/$2.log.
bg_in() {
    local ns=$1 name=$2; shift 2
    ip netns exec "$ns" "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
}

say "network: $sns (10.201.0.1 on $sif) <-> $cns (10.201.0.2 on $cif)"
ip netns add "$sns"
ip netns add "$cns"
ip -n "$sns" link set lo up
ip -n "$cns" link set lo up
ip link add "$sif" netns "$sns" type veth peer name "$cif" netns "$cns"
ip -n "$sns" addr add 10.201.0.1/24 dev "$sif"
ip -n "$cns" addr add 10.201.0.2/24 dev "$cif"
ip -n "$sns" link set "$sif" up
ip -n "$cns" link set "$cif" up

# Certificates: the server's, issued by a test CA, and an unrelated CA that a client will use to
# reject it.
openssl_q() { openssl "$@" >/dev/null 2>&1 || fail "openssl $*"; }
openssl_q req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tdswatch e2e CA" \
    -keyout "$work/ca.key" -out "$work/ca.pem"
openssl_q req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=some other CA" \
    -keyout "$work/other-ca.key" -out "$work/other-ca.pem"
openssl_q req -newkey rsa:2048 -nodes -subj "/CN=10.201.0.1" \
    -keyout "$work/server.key" -out "$work/server.csr"
printf 'subjectAltName=IP:10.201.0.1,DNS:sql.e2e.test\n' >"$work/san.ext"
openssl_q x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 2 -sha256 -extfile "$work/san.ext" -out "$work/server.pem"

# The agent, capturing on the server's veth, metrics on the server namespace's loopback.
cat >"$work/tdswatch.yaml" <<YAML
web:
  listen_address: 127.0.0.1:9433
capture:
  interfaces: [$sif]
  ports: [1433, 1434, 1435, 1436, 1437, 1438, 1439]
event_log:
  path: $work/events.jsonl
  all_connections: true
YAML
"$tdswatch" check-config "$work/tdswatch.yaml" >/dev/null || fail "check-config rejected the config"
bg_in "$sns" agent "$tdswatch" run --config.file "$work/tdswatch.yaml"
http_ok() { ip netns exec "$sns" python3 "$here/check.py" get "$1" >/dev/null 2>&1; }
wait_until 20 http_ok http://127.0.0.1:9433/-/ready || fail "the agent did not become ready"

# Prometheus, scraping the agent every second.
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: tdswatch
    static_configs:
      - targets: ['127.0.0.1:9433']
YAML
bg_in "$sns" prometheus prometheus --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/tsdb" --web.listen-address=127.0.0.1:9090 --log.level=warn
wait_until 30 http_ok http://127.0.0.1:9090/-/ready || fail "prometheus did not become ready"

# A capture of the same veth, for `analyze`.
bg_in "$sns" tcpdump tcpdump -i "$sif" --immediate-mode -U -n -s 0 -w "$work/e2e.pcap" \
    'tcp portrange 1433-1439'
tcpdump_pid=${pids[-1]}
wait_until 10 grep -q "listening on" "$work/tcpdump.log" || fail "tcpdump did not start"

# The responders: one per scenario. FreeTDS's TLS 1.3 inside TDS 7.x is broken
# (docs/real-clients.md), so the servers that tsql must complete with stop at TLS 1.2.
common=(--max-seconds 90 --io-timeout-ms 5000 --cert "$work/server.pem" --key "$work/server.key")
start_responder() {
    local port=$1 name=$2; shift 2
    bg_in "$sns" "responder-$name" "$responder" --listen "10.201.0.1:$port" --scenario "$name" \
        "${common[@]}" "$@"
}
start_responder 1433 login_only --encryption off --tls-max 1.2
start_responder 1434 full --encryption on --tls-max 1.2
start_responder 1435 tls12_only --encryption on --tls-min 1.2 --tls-max 1.2
start_responder 1436 dhe_reset --encryption on --tls-max 1.2 \
    --ciphers DHE-RSA-AES256-GCM-SHA384 --fault rst_after_client_key_exchange
# python-tds without a CA file sends NOT_SUP but still starts TLS when the answer is OFF (its
# process_prelogin), so the servers it meets without TLS answer NOT_SUP.
start_responder 1437 login_error --encryption not-sup --login error
start_responder 1438 no_tls --encryption not-sup
start_responder 1439 dhe_only --encryption on --tls-max 1.2 --ciphers DHE-RSA-AES256-GCM-SHA384
for name in login_only full tls12_only dhe_reset login_error no_tls dhe_only; do
    wait_until 10 grep -q "^listening on" "$work/responder-$name.log" ||
        fail "responder $name did not start"
done

# Clients. tsql reads its servers from freetds.conf; the TLS 1.0 client gets a GnuTLS priority
# override that disables every later version.
cat >"$work/freetds.conf" <<CONF
[global]
	tds version = 7.4
[login_only]
	host = 10.201.0.1
	port = 1433
	encryption = request
[full]
	host = 10.201.0.1
	port = 1434
	encryption = require
[full_wrong_ca]
	host = 10.201.0.1
	port = 1434
	encryption = require
	ca file = $work/other-ca.pem
[tls12_only]
	host = 10.201.0.1
	port = 1435
	encryption = require
[dhe_reset]
	host = 10.201.0.1
	port = 1436
	encryption = require
[login_error]
	host = 10.201.0.1
	port = 1437
	encryption = request
[dhe_only]
	host = 10.201.0.1
	port = 1439
	encryption = require
CONF
cat >"$work/tls10.conf" <<CONF
[overrides]
disabled-version = tls1.3
disabled-version = tls1.2
disabled-version = tls1.1
CONF
cat >"$work/no-dhe.conf" <<CONF
[overrides]
disabled-version = tls1.3
tls-disabled-kx = dhe-rsa
CONF

# tsql SERVER EXPECT [ENV...]: EXPECT is ok (logs in and SELECT 1 prints 1) or fail.
tsql_run() {
    local server=$1 expect=$2; shift 2
    local out=$work/client-tsql-$server.log rc=0
    printf 'SELECT 1\ngo\nexit\n' | ip netns exec "$cns" env FREETDSCONF="$work/freetds.conf" "$@" \
        timeout 20 tsql -S "$server" -U e2e_user -P e2e-not-a-secret >"$out" 2>&1 || rc=$?
    if [ "$expect" = ok ]; then
        [ "$rc" -eq 0 ] && grep -q "(1 row affected)" "$out" || fail "tsql $server: expected a login ($(tail -n 5 "$out"))"
    else
        [ "$rc" -ne 0 ] || ! grep -q "(1 row affected)" "$out" || fail "tsql $server: expected a failure"
    fi
    say "tsql $server: $expect"
}
# pytds NAME PORT MODE EXPECT
pytds_run() {
    local name=$1 port=$2 mode=$3 expect=$4
    ip netns exec "$cns" timeout 20 python3 "$here/pytds_client.py" 10.201.0.1 "$port" "$mode" \
        "$work" "$expect" >"$work/client-pytds-$name.log" 2>&1 ||
        fail "python-tds $name: expected $expect ($(tail -n 5 "$work/client-pytds-$name.log"))"
    say "python-tds $name: $expect"
}

tsql_run login_only ok
pytds_run login_only 1433 login_only ok
pytds_run no_tls 1438 none ok
tsql_run full ok
pytds_run full 1434 full ok
tsql_run full_wrong_ca fail
pytds_run full_wrong_ca 1434 wrong_ca fail
tsql_run tls12_only fail GNUTLS_SYSTEM_PRIORITY_FILE="$work/tls10.conf" GNUTLS_SYSTEM_PRIORITY_FAIL_ON_INVALID=1
tsql_run dhe_reset fail
tsql_run dhe_only fail GNUTLS_SYSTEM_PRIORITY_FILE="$work/no-dhe.conf" GNUTLS_SYSTEM_PRIORITY_FAIL_ON_INVALID=1
tsql_run login_error fail
pytds_run login_error 1437 none fail

# Every connection's verdict is counted when it ends; then one scrape after that.
say "waiting for the agent and a Prometheus scrape"
ip netns exec "$sns" python3 "$here/check.py" wait-agent http://127.0.0.1:9433/metrics 12 20 ||
    fail "the agent did not count the 12 connections"
after=$(date +%s.%N)
ip netns exec "$sns" python3 "$here/check.py" wait-scrape http://127.0.0.1:9090 "$after" 20 ||
    fail "no Prometheus scrape after the traffic"

# Stop the capture (only the tcpdump this test started), then compare.
sleep 0.5
kill -INT "$tcpdump_pid"
wait "$tcpdump_pid" 2>/dev/null || true
"$tdswatch" analyze --format prometheus --no-progress --port 1434 --port 1435 --port 1436 \
    --port 1437 --port 1438 --port 1439 "$work/e2e.pcap" >"$work/analyze.prom" 2>"$work/analyze.log" ||
    fail "tdswatch analyze failed"
ip netns exec "$sns" python3 "$here/check.py" compare http://127.0.0.1:9090 "$work/analyze.prom" \
    "$work/events.jsonl"
say "PASS"
# The closing line test runners print, for whoever reads the log: one end-to-end scenario run.
echo "e2e: 1 passed, 0 failed"
