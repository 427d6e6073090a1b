#!/usr/bin/env bash
# Regenerates the committed corpus (tests/corpus/<client>__<scenario>.pcap): installs the real
# clients, then for each scenario starts tds-responder on 127.0.0.1:$PORT with the scenario's
# settings, captures loopback with tcpdump, runs the client, and stops both. Needs root (tcpdump).
# agent/tests/corpus.rs checks the committed captures against tests/matrix/expected.tsv; tests/run.sh
# also runs the whole matrix into a temporary directory and checks that (today's clients).
# Usage: tests/matrix/run.sh [FILTER]   (FILTER: only scenarios whose file name contains it)
# TDSWATCH_CORPUS_DIR: where the captures go (default tests/corpus; created if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
matrix=$root/tests/matrix
corpus=${TDSWATCH_CORPUS_DIR:-$root/tests/corpus}
filter=${1:-}
PORT=14331   # agent/tests/corpus.rs analyzes with --port 14331
log() { printf '== %s\n' "$*" >&2; }

# --- clients (idempotent, quiet): apt packages, tests/matrix/.venv, tests/matrix/node_modules ----
"$root/tests/clients/install.sh"
venv=$matrix/.venv

log "building tds-responder"
cargo build -q -p tds-responder
responder=$root/target/debug/tds-responder

# --- per-run state, cleaned up on any exit -----------------------------------------------------
work=$(mktemp -d /tmp/tdswatch-matrix.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# The responder's certificate (CN=localhost, SAN localhost/127.0.0.1), trusted by the clients that
# validate; and an unrelated self-signed certificate, the only CA a "rejecting" client trusts.
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
    -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    -keyout "$work/server.key" -out "$work/server.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=Unrelated-CA \
    -keyout "$work/other.key" -out "$work/other.pem" 2>/dev/null

# freetds.conf for tsql and pymssql: FT_ENC is FreeTDS's `encryption`; FT_CA, FT_CIPHERS optional.
freetds_conf() {
    {
        printf '[mx]\n\thost = 127.0.0.1\n\tport = %s\n\ttds version = 7.4\n' "$PORT"
        printf '\tencryption = %s\n' "$FT_ENC"
        [ -n "${FT_CA:-}" ] && printf '\tca file = %s\n\tcheck certificate hostname = no\n' "$FT_CA"
        [ -n "${FT_CIPHERS:-}" ] && printf '\topenssl ciphers = %s\n' "$FT_CIPHERS"
        true
    } >"$work/freetds.conf"
}
# GnuTLS override for tsql: one `key = value` per argument.
gnutls_override() {
    printf '[overrides]\n' >"$work/gnutls.conf"
    for kv in "$@"; do printf '%s\n' "$kv" >>"$work/gnutls.conf"; done
}

# scenario CLIENT NAME RESPONDER-ARGS... -- CLIENT-ENV...
scenario() {
    local client=$1 name=$2
    shift 2
    local rargs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do rargs+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    local file=${client}__${name}.pcap
    if [ -n "$filter" ] && [[ $file != *"$filter"* ]]; then return 0; fi

    "$responder" --listen "127.0.0.1:$PORT" --scenario "$name" --max-seconds 30 \
        --io-timeout-ms 4000 --cert "$work/server.pem" --key "$work/server.key" "${rargs[@]}" \
        >"$work/responder.log" 2>&1 &
    local rpid=$!
    pids+=("$rpid")
    local t=0
    until grep -q '^listening on' "$work/responder.log" 2>/dev/null; do
        sleep 0.05; t=$((t + 1))
        [ $t -lt 200 ] || { cat "$work/responder.log" >&2; echo "responder did not start" >&2; exit 1; }
    done

    rm -f "$work/cap.pcap" "$work/tcpdump.err"
    timeout 40 tcpdump -i lo --immediate-mode -U -n -s 0 -w "$work/cap.pcap" "tcp port $PORT" \
        2>"$work/tcpdump.err" &
    local dpid=$!
    pids+=("$dpid")
    t=0
    until grep -q 'listening on' "$work/tcpdump.err" 2>/dev/null; do
        sleep 0.05; t=$((t + 1))
        [ $t -lt 200 ] || { cat "$work/tcpdump.err" >&2; echo "tcpdump did not start" >&2; exit 1; }
    done

    local result
    case $client in
        tsql) result=$(env "$@" FREETDSCONF="$work/freetds.conf" MX_SECTION=mx \
                timeout 20 "$matrix/clients/tsql.sh" 2>&1 || true) ;;
        pymssql) result=$(env "$@" MX_PORT=$PORT FREETDSCONF="$work/freetds.conf" MX_SECTION=mx \
                timeout 20 "$venv/bin/python" "$matrix/clients/pymssql_client.py" 2>&1 || true) ;;
        python-tds) result=$(env MX_CA="$work/server.pem" MX_PORT=$PORT "$@" \
                timeout 20 "$venv/bin/python" "$matrix/clients/python_tds.py" 2>&1 || true) ;;
        msodbc) result=$(env MX_PORT=$PORT "$@" \
                timeout 20 "$venv/bin/python" "$matrix/clients/msodbc.py" 2>&1 || true) ;;
        jtds) result=$(env MX_PORT=$PORT "$@" bash -c 'cd "$0" && timeout 30 java $JAVA_OPTS \
                -cp /usr/share/java/jtds.jar Jtds.java' "$matrix/clients" 2>&1 || true) ;;
        tedious) result=$(env "$@" MX_PORT=$PORT \
                timeout 20 node "$matrix/clients/tedious.js" 2>&1 || true) ;;
        *) echo "unknown client $client" >&2; exit 1 ;;
    esac
    # Let the responder finish its side (it closes after the client), then stop it and the capture.
    sleep 1
    kill "$rpid" 2>/dev/null || true
    wait "$rpid" 2>/dev/null || true
    sleep 0.3
    kill -INT "$dpid" 2>/dev/null || true
    wait "$dpid" 2>/dev/null || true
    cp "$work/cap.pcap" "$corpus/$file"
    printf '%-55s client: %-28s responder: %s\n' "$file" "$(tail -n1 <<<"$result")" \
        "$(grep '^conn=1 ' "$work/responder.log" | grep -o 'encryption=[^ ]*\|tls=[^ ]*\|fired=[^ ]*\|end="[^"]*"' | tr '\n' ' ')" >&2
}

mkdir -p "$corpus"
S=$work/server.pem O=$work/other.pem
T12=(--tls-max 1.2)
DHE=(--tls-max 1.2 --ciphers DHE-RSA-AES256-GCM-SHA384)

# --- FreeTDS tsql (GnuTLS); its TLS 1.3 in TDS 7.x is broken, so servers cap at TLS 1.2 ---------
# FreeTDS keys full/login-only on the server's answer: `request` + OFF is login-only, `require` + ON full.
tsql() { local n=$1; shift; scenario tsql "$n" "$@"; }
FT_ENC=request freetds_conf; gnutls_override
tsql login_only --encryption off "${T12[@]}" -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
FT_ENC=require freetds_conf
tsql full --encryption on "${T12[@]}" -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql full_512 --encryption on "${T12[@]}" --packet-size 512 -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql login_error --encryption on "${T12[@]}" --login error -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql dhe_rst_after_cke --encryption on "${DHE[@]}" --fault rst_after_client_key_exchange -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql fin_after_client_hello --encryption on "${T12[@]}" --fault fin_after_client_hello -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql fin_after_server_hello --encryption on "${T12[@]}" --fault fin_after_server_hello -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql fin_after_cke --encryption on "${T12[@]}" --fault fin_after_client_key_exchange -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql rst_after_login7 --encryption on "${T12[@]}" --fault rst_after_login7 -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql full_not_sup_server --encryption not-sup "${T12[@]}" -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
FT_ENC=request freetds_conf
tsql login_only_error --encryption off "${T12[@]}" --login error -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql login_only_rst_after_login7 --encryption off "${T12[@]}" --fault rst_after_login7 -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql idle_close_first --encryption off "${T12[@]}" --fault idle_close_first=300 -- MX_IDLE_SECONDS=2 GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
FT_ENC=off freetds_conf
tsql none --encryption not-sup -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql none_error --encryption not-sup --login error -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql enc_mismatch_req --encryption req -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
FT_ENC=require freetds_conf
gnutls_override 'disabled-version = tls1.3' 'disabled-version = tls1.2' 'disabled-version = tls1.1'
tsql tls10_vs_tls12 --encryption on --tls-min 1.2 --tls-max 1.2 -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
tsql tls10 --encryption on "${T12[@]}" -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
gnutls_override 'disabled-version = tls1.3' 'tls-disabled-kx = dhe-rsa' 'tls-disabled-kx = rsa'
tsql no_common_cipher --encryption on "${DHE[@]}" -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
gnutls_override
tsql dhe --encryption on "${DHE[@]}" -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"
FT_ENC=require FT_CA=$O freetds_conf
tsql cert_rejected --encryption on "${T12[@]}" -- GNUTLS_SYSTEM_PRIORITY_FILE="$work/gnutls.conf"

# --- pymssql (bundled FreeTDS 1.5 + OpenSSL 1.1.1) ----------------------------------------------
pym() { local n=$1; shift; scenario pymssql "$n" "$@"; }
FT_ENC=request freetds_conf
pym login_only --encryption off -- X=1
FT_ENC=require freetds_conf
pym full_tls12 --encryption on "${T12[@]}" -- X=1
pym full_tls13 --encryption on --tls-min 1.3 -- X=1
pym login_error --encryption on --login error -- X=1
FT_ENC=off freetds_conf
pym none --encryption not-sup -- X=1
FT_ENC=strict FT_CA=$S freetds_conf
pym strict --strict --tls-min 1.3 -- X=1
pym strict_vs_tds7_server --encryption on -- X=1
FT_ENC=require FT_CIPHERS=ECDHE-RSA-AES256-GCM-SHA384 freetds_conf
pym no_common_cipher --encryption on "${DHE[@]}" -- X=1
FT_ENC=require FT_CA=$O freetds_conf
pym cert_rejected --encryption on "${T12[@]}" -- X=1

# --- python-tds (pyOpenSSL, TLS 1.2 only) -------------------------------------------------------
pyt() { local n=$1; shift; scenario python-tds "$n" "$@"; }
pyt full --encryption on -- MX_ENC=full
pyt login_only --encryption off -- MX_ENC=login_only
pyt none --encryption not-sup -- MX_ENC=none
pyt login_error --encryption on --login error -- MX_ENC=full
pyt dhe_rst_after_cke --encryption on "${DHE[@]}" --fault rst_after_client_key_exchange -- MX_ENC=full
pyt no_common_cipher --encryption on "${DHE[@]}" -- MX_ENC=full MX_CIPHERS=ECDHE-RSA-AES256-GCM-SHA384
pyt cert_rejected --encryption on -- MX_ENC=full MX_CA="$O"
pyt enc_mismatch_req --encryption req -- MX_ENC=none

# --- tedious (Node's OpenSSL; TLS 1.2 only in TDS 7.x, 1.2-1.3 in strict) -------------------------------------------------------------------
ted() { local n=$1; shift; scenario tedious "$n" "$@"; }
ted full --encryption on -- MX_ENC=full
ted tls12_vs_tls13_server --encryption on --tls-min 1.3 -- MX_ENC=full
ted full_512 --encryption on --packet-size 512 -- MX_ENC=full
ted strict --strict --tls-min 1.3 -- MX_ENC=strict MX_CA="$S"
ted strict_vs_tds7_server --encryption on -- MX_ENC=strict MX_CA="$S"
ted tds7_vs_strict_server --strict -- MX_ENC=full
ted none --encryption not-sup -- MX_ENC=none
ted login_error --encryption on --login error -- MX_ENC=full
ted dhe_rst_after_cke --encryption on "${DHE[@]}" --fault rst_after_client_key_exchange -- MX_ENC=full
ted tls10_vs_tls12 --encryption on --tls-min 1.2 -- MX_ENC=full MX_TLS_MIN=TLSv1 MX_TLS_MAX=TLSv1 MX_CIPHERS='DEFAULT@SECLEVEL=0'
ted tls10 --encryption on -- MX_ENC=full MX_TLS_MIN=TLSv1 MX_TLS_MAX=TLSv1 MX_CIPHERS='DEFAULT@SECLEVEL=0'
ted dhe --encryption on "${DHE[@]}" -- MX_ENC=full
ted no_common_cipher --encryption on "${DHE[@]}" -- MX_ENC=full MX_CIPHERS=ECDHE-RSA-AES256-GCM-SHA384
ted cert_rejected --encryption on -- MX_ENC=full MX_CA="$O"
ted enc_mismatch_req --encryption req -- MX_ENC=none
ted fin_after_client_hello --encryption on --fault fin_after_client_hello -- MX_ENC=full
ted fin_after_server_hello --encryption on --fault fin_after_server_hello -- MX_ENC=full
ted rst_after_login7 --encryption on --fault rst_after_login7 -- MX_ENC=full

# --- Microsoft ODBC Driver 18 (mssql-python; system OpenSSL 3, OPENSSL_CONF honoured) ------------
# An OpenSSL config for the driver: system_default with the given directives.
openssl_conf() {
    {
        printf 'openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n'
        printf '[ssl_sect]\nsystem_default = system_default_sect\n[system_default_sect]\n'
        printf '%s\n' "$@"
    } >"$work/openssl-$1.cnf"
}
openssl_conf MinProtocol=TLSv1 MaxProtocol=TLSv1 'CipherString=DEFAULT@SECLEVEL=0'
openssl_conf CipherString=ECDHE-RSA-AES256-GCM-SHA384 MaxProtocol=TLSv1.2
odbc() { local n=$1; shift; scenario msodbc "$n" "$@"; }
odbc login_only --encryption off -- MX_ENC=login_only
odbc full --encryption on -- MX_ENC=full
odbc full_tls12 --encryption on "${T12[@]}" -- MX_ENC=full
odbc full_512 --encryption on "${T12[@]}" --packet-size 512 -- MX_ENC=full
odbc none --encryption not-sup -- MX_ENC=login_only
odbc strict --strict --tls-min 1.3 -- MX_ENC=strict MX_CA="$S"
odbc strict_vs_tds7_server --encryption on -- MX_ENC=strict MX_CA="$S"
odbc tds7_vs_strict_server --strict -- MX_ENC=full
odbc login_error --encryption on --login error -- MX_ENC=full
odbc login_only_error --encryption off --login error -- MX_ENC=login_only
odbc tls10_vs_tls12 --encryption on --tls-min 1.2 -- MX_ENC=full OPENSSL_CONF="$work/openssl-MinProtocol=TLSv1.cnf"
odbc tls10 --encryption on -- MX_ENC=full OPENSSL_CONF="$work/openssl-MinProtocol=TLSv1.cnf"
odbc dhe --encryption on "${DHE[@]}" -- MX_ENC=full
odbc no_common_cipher --encryption on "${DHE[@]}" -- MX_ENC=full OPENSSL_CONF="$work/openssl-CipherString=ECDHE-RSA-AES256-GCM-SHA384.cnf"
odbc dhe_rst_after_cke --encryption on "${DHE[@]}" --fault rst_after_client_key_exchange -- MX_ENC=full
odbc cert_rejected --encryption on "${T12[@]}" -- MX_ENC=full MX_CA="$O"
odbc enc_mismatch_not_sup --encryption not-sup -- MX_ENC=full
odbc fin_after_client_hello --encryption on --fault fin_after_client_hello -- MX_ENC=full
odbc rst_after_login7 --encryption on --fault rst_after_login7 -- MX_ENC=full

# --- jTDS 1.3.1 (Java 17's JSSE; TLS 1.2-1.3, DHE offered) ---------------------------------------
# ssl=off sends no PRELOGIN; request sends OFF, require ON, authenticate ON and validates the
# certificate against Java's CA store. TLS 1.0 needs the JDK's disabled-algorithm list emptied.
printf 'jdk.tls.disabledAlgorithms=\n' >"$work/java.security"
jtds() { local n=$1; shift; scenario jtds "$n" "$@"; }
jtds full --encryption on "${T12[@]}" -- MX_SSL=require JAVA_OPTS=
jtds full_tls13 --encryption on -- MX_SSL=require JAVA_OPTS=
jtds none --encryption not-sup -- MX_SSL=request JAVA_OPTS=
jtds no_prelogin --encryption on -- MX_SSL=off JAVA_OPTS=
jtds login_error --encryption on "${T12[@]}" --login error -- MX_SSL=require JAVA_OPTS=
jtds tls10_vs_tls12 --encryption on --tls-min 1.2 -- MX_SSL=require \
    JAVA_OPTS="-Djava.security.properties=$work/java.security -Djdk.tls.client.protocols=TLSv1"
jtds tls10 --encryption on "${T12[@]}" -- MX_SSL=require \
    JAVA_OPTS="-Djava.security.properties=$work/java.security -Djdk.tls.client.protocols=TLSv1"
jtds no_common_cipher --encryption on "${DHE[@]}" -- MX_SSL=require \
    JAVA_OPTS="-Djdk.tls.client.cipherSuites=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
jtds dhe_rst_after_cke --encryption on "${DHE[@]}" --fault rst_after_client_key_exchange -- MX_SSL=require JAVA_OPTS=
jtds cert_rejected --encryption on "${T12[@]}" -- MX_SSL=authenticate JAVA_OPTS=
jtds rst_after_login7 --encryption on "${T12[@]}" --fault rst_after_login7 -- MX_SSL=require JAVA_OPTS=

log "corpus: $(ls "$corpus" | wc -l) captures in $corpus"
