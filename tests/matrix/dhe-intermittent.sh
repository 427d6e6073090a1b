#!/usr/bin/env bash
# The intermittent DHE failure (issue 3): a real client makes at least $DHE_N DHE handshakes against
# tds-responder with `--fault dhe_reset_fraction=$DHE_F` (RST after the client's Finished on that
# fraction of the connections, chosen by --seed), tcpdump captures loopback, and then
# `tdswatch analyze` (text report and --format json) must show:
#   - one verdict per connection the responder logged, every one a DHE handshake;
#   - `dhe_key_exchange_failure` on exactly the connections the responder logged as reset
#     (`fired=rst`, matched by client port), and no other failure;
#   - the report's DHE line "R of N DHE handshakes failed (P%)" with the same R and N;
#   - R/N within 4 binomial standard deviations of F.
# The client is FreeTDS tsql (GnuTLS), $DHE_PAR at a time. Needs root (tcpdump), tsql, tcpdump,
# python3; tests/run.sh installs them, this script fails clearly when one is missing.
# Usage: tests/matrix/dhe-intermittent.sh   (env: DHE_N, DHE_F, DHE_SEED, DHE_PAR)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
N=${DHE_N:-2000}
F=${DHE_F:-0.05}
SEED=${DHE_SEED:-7}
PAR=${DHE_PAR:-4}
PORT=14332
log() { printf '== dhe: %s\n' "$*" >&2; }

for tool in tsql tcpdump openssl python3 timeout xargs; do
    command -v "$tool" >/dev/null || { echo "dhe-intermittent.sh: $tool is missing" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "dhe-intermittent.sh: needs root (tcpdump)" >&2; exit 1; }

log "building tds-responder and tdswatch"
cargo build -q -p tds-responder -p tdswatch
responder=$root/target/debug/tds-responder
tdswatch=$root/target/debug/tdswatch

work=$(mktemp -d /tmp/tdswatch-dhe.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
    -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    -keyout "$work/server.key" -out "$work/server.pem" 2>/dev/null
# Full encryption (FreeTDS `require` against the answer ON), TDS 7.4; GnuTLS's defaults offer DHE.
printf '[dhe]\n\thost = 127.0.0.1\n\tport = %s\n\ttds version = 7.4\n\tencryption = require\n' \
    "$PORT" >"$work/freetds.conf"

"$responder" --listen "127.0.0.1:$PORT" --scenario dhe_intermittent --encryption on \
    --tls-max 1.2 --ciphers DHE-RSA-AES256-GCM-SHA384 --fault "dhe_reset_fraction=$F" \
    --seed "$SEED" --io-timeout-ms 4000 --max-seconds 400 \
    --cert "$work/server.pem" --key "$work/server.key" >"$work/responder.log" 2>&1 &
pids+=($!)
rpid=$!
t=0
until grep -q '^listening on' "$work/responder.log" 2>/dev/null; do
    sleep 0.05; t=$((t + 1))
    [ $t -lt 200 ] || { cat "$work/responder.log" >&2; echo "responder did not start" >&2; exit 1; }
done

timeout 420 tcpdump -i lo -B 32768 --immediate-mode -U -n -s 0 -w "$work/dhe.pcap" \
    "tcp port $PORT" 2>"$work/tcpdump.err" &
dpid=$!
pids+=("$dpid")
t=0
until grep -q 'listening on' "$work/tcpdump.err" 2>/dev/null; do
    sleep 0.05; t=$((t + 1))
    [ $t -lt 200 ] || { cat "$work/tcpdump.err" >&2; echo "tcpdump did not start" >&2; exit 1; }
done

# One tsql login and SELECT 1 per connection; the reset ones fail, which is the point.
log "driving $N DHE handshakes with tsql, $PAR in parallel (F=$F, seed $SEED)"
start=$(date +%s)
export FREETDSCONF=$work/freetds.conf
seq "$N" | timeout 300 xargs -P "$PAR" -I{} sh -c \
    'printf "SELECT 1\ngo\nexit\n" | timeout 20 tsql -S dhe -U matrix -P not-a-secret >/dev/null 2>&1; true' \
    || { echo "dhe-intermittent.sh: the client loop did not finish within 300 s" >&2; exit 1; }
log "clients done in $(($(date +%s) - start)) s"

sleep 1
kill "$rpid" 2>/dev/null || true
wait "$rpid" 2>/dev/null || true
sleep 0.5
kill -INT "$dpid" 2>/dev/null || true
wait "$dpid" 2>/dev/null || true
if ! grep -q '^0 packets dropped by kernel' "$work/tcpdump.err"; then
    cat "$work/tcpdump.err" >&2
    echo "dhe-intermittent.sh: tcpdump dropped packets; the capture is incomplete" >&2
    exit 1
fi

"$tdswatch" analyze --no-progress --port "$PORT" "$work/dhe.pcap" >"$work/report.txt"
"$tdswatch" analyze --no-progress --format json --port "$PORT" "$work/dhe.pcap" >"$work/verdicts.jsonl"

python3 - "$work/responder.log" "$work/verdicts.jsonl" "$work/report.txt" "$N" "$F" <<'EOF'
import json, math, re, sys
from collections import Counter

rlog, jsonl, report, n_min, f = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
fail = []

# The responder's view: one line per connection; fired=rst marks the reset ones.
conns = [l for l in open(rlog) if l.startswith("conn=")]
port = lambda s: s.rsplit(":", 1)[1]
logged = Counter(port(re.search(r" peer=(\S+)", l).group(1)) for l in conns)
reset = Counter(port(re.search(r" peer=(\S+)", l).group(1)) for l in conns if " fired=rst " in l)
established = sum(1 for l in conns if " fired=- " in l and " login=ack " in l)

# tdswatch's view.
verdicts = [json.loads(l) for l in open(jsonl) if l.strip()]
dhe = [v for v in verdicts if (v.get("tls") or {}).get("kx") == "dhe"]
failed = Counter(port(v["client"]) for v in verdicts if v.get("reason") == "dhe_key_exchange_failure")
others = Counter(f'{v.get("outcome")}/{v.get("reason")}' for v in verdicts if v.get("reason") != "dhe_key_exchange_failure")
n, r = len(dhe), sum(failed.values())

print(f"responder: {len(conns)} connections, {sum(reset.values())} reset (fired=rst), {established} logged in")
print(f"tdswatch:  {len(verdicts)} verdicts, {n} DHE, {r} dhe_key_exchange_failure; others: {dict(others)}")
if len(conns) < n_min:
    fail.append(f"only {len(conns)} connections, wanted at least {n_min}")
if len(verdicts) != len(conns):
    fail.append(f"{len(verdicts)} verdicts for {len(conns)} logged connections")
if n != len(verdicts):
    fail.append(f"{len(verdicts) - n} verdicts are not DHE handshakes")
if Counter(logged) != Counter(port(v["client"]) for v in verdicts):
    fail.append("the verdicts' client ports are not the responder's peers")
if failed != reset:
    fail.append(f"dhe_key_exchange_failure on {sorted((failed - reset).elements())} not reset, "
                f"reset but not flagged: {sorted((reset - failed).elements())}")
if others != Counter({"established/None": len(verdicts) - r}):
    fail.append(f"the connections not reset must all be established: {dict(others)}")

def pct(k, total):
    """The report's spelling of a share (agent/src/output/report.rs, pct)."""
    if total == 0:
        return "–"
    if k == 0:
        return "0%"
    if k >= total:
        return "100%"
    p = k * 100 / total
    return "99.9%" if p >= 99.95 else f"{p:.1f}%" if p >= 1 else f"{p:.2f}%" if p >= 0.01 else "<0.01%"

# The report's DHE line: "R of N DHE handshakes failed (P%)".
text = open(report).read()
m = re.search(r"DHE\s+([\d ]+) of ([\d ]+) DHE handshakes failed \(([^)]*)\)", text)
if not m:
    fail.append("no DHE line in the report")
else:
    rr, rn = int(m.group(1).replace(" ", "")), int(m.group(2).replace(" ", ""))
    print(f"report:    {m.group(0).split(None, 1)[1]}")
    if (rr, rn) != (r, n):
        fail.append(f"report says {rr} of {rn}, JSON says {r} of {n}")
    want = pct(r, n)
    if m.group(3) != want:
        fail.append(f"report share {m.group(3)}, expected {want}")

if n:
    share = r / n
    sd = math.sqrt(f * (1 - f) / n)
    z = (share - f) / sd
    print(f"share:     {r}/{n} = {share:.4f}; F = {f}, binomial sd {sd:.4f}, z = {z:+.2f} (bound |z| <= 4)")
    if abs(z) > 4:
        fail.append(f"share {share:.4f} is {z:+.2f} sd from {f}")
for x in fail:
    print("FAIL:", x)
print(f"dhe-intermittent: {'FAILED' if fail else 'ok'}")
# The closing line test runners print: one run, its checks all held or not.
print(f"dhe-intermittent: {0 if fail else 1} passed, {1 if fail else 0} failed")
sys.exit(1 if fail else 0)
EOF
