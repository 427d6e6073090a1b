#!/usr/bin/env bash
# End-to-end test of the live agent (issue 4): two network namespaces joined by a veth, the TDS
# test responder in "server" (one instance per scenario, ports 1433-1442), real clients (FreeTDS
# tsql, python-tds, tedious, Microsoft ODBC Driver 18 via mssql-python, tiberius) in "client",
# `tdswatch run` capturing on the server's veth, and a real Prometheus server scraping it every
# second. After a scripted mix of handshakes, PromQL queries must return the exact expected counts
# per label set, and `tdswatch analyze --format prometheus` over a tcpdump capture of the same veth
# must give the same counts.
#
# Needs root, iproute2, tcpdump, prometheus (tests/run.sh installs them) and the clients, which
# tests/clients/install.sh installs (it is called first; idempotent). Bounded in time (every step
# has a deadline, and a watchdog ends the run after $E2E_LIMIT s once the binaries are built);
# namespaces, processes and files are removed on every exit path.
# Usage: tests/e2e/prometheus.sh   (from anywhere; TDSWATCH_E2E_KEEP=1 keeps the work directory)
#
# Layout: prerequisites and build; per-run names, cleanup and watchdog; the setup functions
# (network, certificates, agent, Prometheus, capture, responders, client settings); the client
# runners and the scripted mix; then the checks "after the traffic" (wait for the agent and a
# scrape, stop the capture, compare PromQL and analyze with check.py). Checks that only need the
# running Prometheus (rules, dashboard queries) belong in after_traffic, before stop_capture.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
here=$root/tests/e2e
E2E_LIMIT=150   # seconds, once the binaries are built (a run takes about 20 s)

fail() { echo "e2e: FAIL: $*" >&2; exit 1; }
say() { echo "e2e: $*" >&2; }

# --- prerequisites and build -------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || fail "needs root (network namespaces, capture): run it as root, as CI does"
"$root/tests/clients/install.sh" || fail "tests/clients/install.sh could not install the clients"
py=$root/tests/matrix/.venv/bin/python   # python-tds, pyOpenSSL and mssql-python live here
for tool in ip tcpdump prometheus tsql openssl python3 node timeout; do
    command -v "$tool" >/dev/null || fail "$tool is missing: tests/run.sh installs it"
done
"$py" -c 'import pytds, OpenSSL, mssql_python' 2>/dev/null ||
    fail "python-tds / pyOpenSSL / mssql-python are missing from $py: run tests/clients/install.sh"
[ -f "$root/tests/matrix/node_modules/tedious/package.json" ] ||
    fail "tedious is missing from tests/matrix/node_modules: run tests/clients/install.sh"

say "building tdswatch, tds-responder and tiberius-client (debug)"
cargo build -q --locked -p tdswatch -p tds-responder -p tiberius-client
target=${CARGO_TARGET_DIR:-$root/target}/debug
tdswatch=$target/tdswatch
responder=$target/tds-responder
tiberius=$target/tiberius-client

# --- per-run names, cleanup, watchdog ----------------------------------------------------------
# Names unique to this run (interface names: 15 bytes at most).
tag="e2e$$"
tag=${tag:0:10}
sns="${tag}s"
cns="${tag}c"
sif="${tag}S"
cif="${tag}C"
SERVER=10.201.0.1
PORTS=(1433 1434 1435 1436 1437 1438 1439 1440 1441 1442)
work=$(mktemp -d /tmp/tdswatch-e2e.XXXXXX)
pids=()
watchdog=
tcpdump_pid=

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

# The whole run is bounded: a watchdog ends it through the cleanup trap after $E2E_LIMIT s (bash
# runs the trap once the step in progress ends; every step has its own limit of 20 s at most).
(
    sleep "$E2E_LIMIT" </dev/null >/dev/null 2>&1 &
    s=$!
    trap 'kill $s 2>/dev/null; exit 0' TERM
    wait $s && { echo "e2e: FAIL: time limit ($E2E_LIMIT s) reached" >&2; kill -TERM $$; }
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

http_ok() { ip netns exec "$sns" python3 "$here/check.py" get "$1" >/dev/null 2>&1; }

# --- setup -------------------------------------------------------------------------------------
setup_network() {
    say "network: $sns ($SERVER on $sif) <-> $cns (10.201.0.2 on $cif)"
    ip netns add "$sns"
    ip netns add "$cns"
    ip -n "$sns" link set lo up
    ip -n "$cns" link set lo up
    ip link add "$sif" netns "$sns" type veth peer name "$cif" netns "$cns"
    ip -n "$sns" addr add "$SERVER/24" dev "$sif"
    ip -n "$cns" addr add 10.201.0.2/24 dev "$cif"
    ip -n "$sns" link set "$sif" up
    ip -n "$cns" link set "$cif" up
}

# The server's certificate, issued by a test CA (SAN: the server's address and sql.e2e.test), and
# an unrelated CA that clients use to reject it.
make_certs() {
    openssl_q() { openssl "$@" >/dev/null 2>&1 || fail "openssl $*"; }
    openssl_q req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tdswatch e2e CA" \
        -keyout "$work/ca.key" -out "$work/ca.pem"
    openssl_q req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=some other CA" \
        -keyout "$work/other-ca.key" -out "$work/other-ca.pem"
    openssl_q req -newkey rsa:2048 -nodes -subj "/CN=$SERVER" \
        -keyout "$work/server.key" -out "$work/server.csr"
    printf 'subjectAltName=IP:%s,DNS:sql.e2e.test\n' "$SERVER" >"$work/san.ext"
    openssl_q x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
        -CAcreateserial -days 2 -sha256 -extfile "$work/san.ext" -out "$work/server.pem"
}

# The agent, capturing on the server's veth, metrics on the server namespace's loopback.
start_agent() {
    local ports
    ports=$(IFS=,; echo "${PORTS[*]}")
    cat >"$work/tdswatch.yaml" <<YAML
web:
  listen_address: 127.0.0.1:9433
capture:
  interfaces: [$sif]
  ports: [${ports//,/, }]
event_log:
  path: $work/events.jsonl
  all_connections: true
YAML
    "$tdswatch" check-config "$work/tdswatch.yaml" >/dev/null || fail "check-config rejected the config"
    bg_in "$sns" agent "$tdswatch" run --config.file "$work/tdswatch.yaml"
    wait_until 20 http_ok http://127.0.0.1:9433/-/ready || fail "the agent did not become ready"
}

# Prometheus, scraping the agent every second.
start_prometheus() {
    cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $root/deploy/prometheus/tdswatch.rules.yml
scrape_configs:
  - job_name: tdswatch
    static_configs:
      - targets: ['127.0.0.1:9433']
YAML
    bg_in "$sns" prometheus prometheus --config.file="$work/prometheus.yml" \
        --storage.tsdb.path="$work/tsdb" --web.listen-address=127.0.0.1:9090 --log.level=warn
    wait_until 30 http_ok http://127.0.0.1:9090/-/ready || fail "prometheus did not become ready"
}

# A capture of the same veth, for `analyze`.
start_capture() {
    bg_in "$sns" tcpdump tcpdump -i "$sif" --immediate-mode -U -n -s 0 -w "$work/e2e.pcap" \
        "tcp portrange ${PORTS[0]}-${PORTS[-1]}"
    tcpdump_pid=${pids[-1]}
    wait_until 10 grep -q "listening on" "$work/tcpdump.log" || fail "tcpdump did not start"
}

# Stops the capture (only the tcpdump this test started).
stop_capture() {
    sleep 0.5
    kill -INT "$tcpdump_pid"
    wait "$tcpdump_pid" 2>/dev/null || true
}

# The responders: one per scenario, all with the test CA's certificate. FreeTDS's TLS 1.3 inside
# TDS 7.x is broken (real-clients.md), so the servers that tsql must complete with stop at 1.2.
start_responders() {
    local common=(--max-seconds "$E2E_LIMIT" --io-timeout-ms 5000 --cert "$work/server.pem"
        --key "$work/server.key")
    start_responder() {
        local port=$1 name=$2; shift 2
        bg_in "$sns" "responder-$name" "$responder" --listen "$SERVER:$port" --scenario "$name" \
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
    start_responder 1440 strict --strict
    # A suite that tiberius (rust-openssl's client list: no ARIA, CAMELLIA, CCM) never offers.
    start_responder 1441 aria_only --encryption on --tls-max 1.2 --ciphers ECDHE-ARIA256-GCM-SHA384
    # The other way round for tiberius, which cannot go below TLS 1.2: a TLS 1.0-only server.
    start_responder 1442 tls10_only --encryption on --tls-max 1.0
    local name
    for name in login_only full tls12_only dhe_reset login_error no_tls dhe_only strict aria_only \
        tls10_only; do
        wait_until 10 grep -q "^listening on" "$work/responder-$name.log" ||
            fail "responder $name did not start"
    done
}

# How the clients are forced: tsql reads its servers from freetds.conf and its TLS limits from a
# GnuTLS priority override; msodbc18 takes an OpenSSL config (OPENSSL_CONF); tedious takes its
# limits as a mode (tedious_client.js); tiberius cannot be forced, the servers constrain it.
write_client_settings() {
    {
        printf '[global]\n\ttds version = 7.4\n'
        # section port encryption [ca file]
        while read -r section port enc ca; do
            printf '[%s]\n\thost = %s\n\tport = %s\n\tencryption = %s\n' "$section" "$SERVER" "$port" "$enc"
            [ -z "$ca" ] || printf '\tca file = %s\n' "$ca"
        done <<LIST
login_only 1433 request
full 1434 require
full_wrong_ca 1434 require $work/other-ca.pem
tls12_only 1435 require
dhe_reset 1436 require
login_error 1437 request
no_tls 1438 off
dhe_only 1439 require
LIST
    } >"$work/freetds.conf"
    printf '[overrides]\n%s\n' 'disabled-version = tls1.3' 'disabled-version = tls1.2' \
        'disabled-version = tls1.1' >"$work/gnutls-tls10.conf"
    printf '[overrides]\n%s\n' 'disabled-version = tls1.3' 'tls-disabled-kx = dhe-rsa' \
        >"$work/gnutls-no-dhe.conf"
    openssl_conf() {
        local file=$1; shift
        {
            printf 'openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n'
            printf '[ssl_sect]\nsystem_default = system_default_sect\n[system_default_sect]\n'
            printf '%s\n' "$@"
        } >"$file"
    }
    openssl_conf "$work/openssl-tls10.cnf" MinProtocol=TLSv1 MaxProtocol=TLSv1 \
        'CipherString=DEFAULT@SECLEVEL=0'
    openssl_conf "$work/openssl-ecdhe.cnf" MaxProtocol=TLSv1.2 CipherString=ECDHE-RSA-AES256-GCM-SHA384
}

# --- clients -----------------------------------------------------------------------------------
connections=0   # every client run below opens exactly one connection

# tsql SERVER EXPECT [ENV...]: EXPECT is ok (logs in and SELECT 1 prints 1) or fail.
tsql_run() {
    local server=$1 expect=$2; shift 2
    local out=$work/client-tsql-$server.log rc=0
    connections=$((connections + 1))
    printf 'SELECT 1\ngo\nexit\n' | ip netns exec "$cns" env FREETDSCONF="$work/freetds.conf" "$@" \
        timeout 20 tsql -S "$server" -U e2e_user -P e2e-not-a-secret >"$out" 2>&1 || rc=$?
    if [ "$expect" = ok ]; then
        [ "$rc" -eq 0 ] && grep -q "(1 row affected)" "$out" || fail "tsql $server: expected a login ($(tail -n 5 "$out"))"
    else
        [ "$rc" -ne 0 ] || ! grep -q "(1 row affected)" "$out" || fail "tsql $server: expected a failure"
    fi
    say "tsql $server: $expect"
}

# client CLIENT NAME EXPECT [ENV...] -- COMMAND...: runs a client that checks its own outcome
# (exit 0 when EXPECT, ok or fail, happened) in the client namespace, bounded by timeout.
client() {
    local who=$1 name=$2 expect=$3; shift 3
    local env=()
    while [ "$1" != -- ]; do env+=("$1"); shift; done
    shift
    local out=$work/client-$who-$name.log
    connections=$((connections + 1))
    ip netns exec "$cns" env "${env[@]}" timeout 20 "$@" >"$out" 2>&1 ||
        fail "$who $name: expected $expect ($(tail -n 5 "$out"))"
    say "$who $name: $expect"
}
# python-tds NAME PORT none|login_only|full|wrong_ca EXPECT
pytds() { client python-tds "$1" "$4" -- "$py" "$here/pytds_client.py" "$SERVER" "$2" "$3" "$work" "$4"; }
# tedious NAME PORT none|full|strict|tls10|ecdhe EXPECT [CA]
tedious() { client tedious "$1" "$4" -- node "$here/tedious_client.js" "$SERVER" "$2" "$3" "$4" "${@:5}"; }
# msodbc NAME PORT login_only|full|validate|strict EXPECT [OPENSSL_CONF=FILE] [CERT]
msodbc() {
    local name=$1 port=$2 mode=$3 expect=$4 env=(); shift 4
    [[ ${1:-} != OPENSSL_CONF=* ]] || { env+=("$1"); shift; }
    client msodbc "$name" "$expect" "${env[@]}" -- "$py" "$here/msodbc_client.py" "$SERVER" "$port" \
        "$mode" "$expect" "$@"
}
# tiberius NAME PORT none|login_only|full EXPECT [CA]
tiberius() { client tiberius "$1" "$4" -- "$tiberius" "$SERVER" "$2" "$3" "$4" "${@:5}"; }

# The scripted mix. Each line is one connection; the expected verdict is in the comment, and
# check.py holds the resulting counts. Keep the two in step.
run_mix() {
    local ca=$work/ca.pem other=$work/other-ca.pem
    local tls10=(GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls-tls10.conf" GNUTLS_SYSTEM_PRIORITY_FAIL_ON_INVALID=1)
    local no_dhe=(GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls-no-dhe.conf" GNUTLS_SYSTEM_PRIORITY_FAIL_ON_INVALID=1)

    # 1433 (OFF, TLS <= 1.2): established, login_only
    tsql_run login_only ok
    pytds login_only 1433 login_only ok
    msodbc login_only 1433 login_only ok
    tiberius login_only 1433 login_only ok "$ca"
    # 1434 (ON, TLS <= 1.2): established, full ...
    tsql_run full ok
    pytds full 1434 full ok
    tedious full 1434 full ok "$ca"
    msodbc full 1434 full ok
    tiberius full 1434 full ok "$ca"
    # ... and the certificate rejected: certificate_rejected (tedious: closed, see README)
    tsql_run full_wrong_ca fail
    pytds full_wrong_ca 1434 wrong_ca fail
    tedious full_wrong_ca 1434 full fail "$other"
    msodbc validate 1434 validate fail
    tiberius full_wrong_ca 1434 full fail "$other"
    # 1435 (TLS 1.2 only), clients limited to TLS 1.0: no_common_tls_version
    tsql_run tls12_only fail "${tls10[@]}"
    tedious tls10 1435 tls10 fail
    msodbc tls10 1435 full fail OPENSSL_CONF="$work/openssl-tls10.cnf"
    # 1436 (DHE only, RST after the ClientKeyExchange): dhe_key_exchange_failure
    tsql_run dhe_reset fail
    pytds dhe_reset 1436 full fail
    tedious dhe_reset 1436 full fail
    msodbc dhe_reset 1436 full fail
    tiberius dhe_reset 1436 full fail
    # 1437 (NOT_SUP, ERROR 18456): login_failed, none
    tsql_run login_error fail
    pytds login_error 1437 none fail
    tedious login_error 1437 none fail
    msodbc login_error 1437 login_only fail
    tiberius login_error 1437 none fail
    # 1438 (NOT_SUP): established, none
    tsql_run no_tls ok
    pytds no_tls 1438 none ok
    tedious no_tls 1438 none ok
    msodbc no_tls 1438 login_only ok
    tiberius no_tls 1438 none ok
    # 1439 (DHE only), clients without DHE: no_common_cipher
    tsql_run dhe_only fail "${no_dhe[@]}"
    tedious ecdhe 1439 ecdhe fail
    msodbc ecdhe 1439 full fail OPENSSL_CONF="$work/openssl-ecdhe.cnf"
    # 1440 (TDS 8.0 strict): established, strict
    tedious strict 1440 strict ok "$ca"
    msodbc strict 1440 strict ok "$work/server.pem"
    # 1441 (ARIA only): tiberius, no_common_cipher
    tiberius aria 1441 full fail
    # 1442 (TLS 1.0 only): tiberius (TLS 1.2-1.3), no_common_tls_version
    tiberius tls10_server 1442 full fail
}

# --- after the traffic -------------------------------------------------------------------------
after_traffic() {
    # Every connection's verdict is counted when it ends; then one scrape after that.
    say "waiting for the agent and a Prometheus scrape"
    ip netns exec "$sns" python3 "$here/check.py" wait-agent http://127.0.0.1:9433/metrics \
        "$connections" 20 || fail "the agent did not count the $connections connections"
    local after
    after=$(date +%s.%N)
    ip netns exec "$sns" python3 "$here/check.py" wait-scrape http://127.0.0.1:9090 "$after" 20 ||
        fail "no Prometheus scrape after the traffic"

    # The alert rules (loaded by this Prometheus) and every dashboard query, against the
    # traffic just counted.
    ip netns exec "$sns" python3 "$here/check.py" rules http://127.0.0.1:9090 \
        "$root/deploy/prometheus/tdswatch.rules.yml" 20 || fail "alert rules (see above)"
    ip netns exec "$sns" python3 "$root/dashboards/check.py" queries http://127.0.0.1:9090 \
        --job tdswatch >"$work/dashboards.log" 2>&1 || {
        grep -v ": ok (" "$work/dashboards.log" >&2
        fail "dashboard queries (see above)"
    }
    tail -n 1 "$work/dashboards.log" >&2

    stop_capture
    local ports=() p
    for p in "${PORTS[@]:1}"; do ports+=(--port "$p"); done
    "$tdswatch" analyze --format prometheus --no-progress "${ports[@]}" "$work/e2e.pcap" \
        >"$work/analyze.prom" 2>"$work/analyze.log" || fail "tdswatch analyze failed"
    ip netns exec "$sns" python3 "$here/check.py" compare http://127.0.0.1:9090 \
        "$work/analyze.prom" "$work/events.jsonl"
}

# --- main --------------------------------------------------------------------------------------
setup_network
make_certs
start_agent
start_prometheus
start_capture
start_responders
write_client_settings
run_mix
expected=$(python3 "$here/check.py" connections)
[ "$connections" -eq "$expected" ] ||
    fail "the mix opened $connections connections, check.py expects $expected: keep them in step"
after_traffic
say "PASS ($connections connections, ${SECONDS}s)"
# The closing line test runners print, for whoever reads the log: one end-to-end scenario run.
echo "e2e: 1 passed, 0 failed"
