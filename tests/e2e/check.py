"""HTTP and PromQL helpers for tests/e2e/prometheus.sh (standard library only).

  check.py get URL                         exit 0 when URL answers 200
  check.py wait-agent METRICS_URL N SECS   wait until the agent counts N connections
  check.py wait-scrape PROM_URL T SECS     wait until Prometheus scraped the agent after time T
  check.py compare PROM_URL ANALYZE_PROM EVENTS_JSONL
      every expectation below, asked of Prometheus with PromQL and computed from the
      `tdswatch analyze --format prometheus` output of the capture, must match exactly; the
      event log must hold one record per connection and no credential.
"""

import json
import re
import sys
import time
import urllib.parse
import urllib.request

# The scripted mix (see prometheus.sh), 12 connections:
#   1433 login-only server: tsql login-only, python-tds login-only
#   1434 full server:       tsql full, python-tds full, tsql and python-tds with the wrong CA
#   1435 TLS 1.2-only:      tsql forced to TLS 1.0
#   1436 DHE + RST after the ClientKeyExchange: tsql
#   1437 ERROR 18456, NOT_SUP: tsql, python-tds (no TLS)
#   1438 NOT_SUP server:    python-tds without TLS
#   1439 DHE-only server:   tsql with DHE disabled (and TLS 1.3, which the server lacks)
CONNECTIONS = 12
S = "10.201.0.1:"

# (metric or selector, labels to sum by, {label values: expected count}); label sets not
# listed must be absent (zero).
EXPECT = [
    ("tds_connections_total", ("outcome",), {("established",): 5, ("failed",): 7}),
    (
        "tds_connections_total",
        ("server", "encryption", "outcome"),
        {
            (S + "1433", "login_only", "established"): 2,
            (S + "1438", "none", "established"): 1,
            (S + "1439", "full", "failed"): 1,
            (S + "1434", "full", "established"): 2,
            (S + "1434", "full", "failed"): 2,
            (S + "1435", "full", "failed"): 1,
            (S + "1436", "full", "failed"): 1,
            (S + "1437", "none", "failed"): 2,
        },
    ),
    (
        "tds_handshake_failures_total",
        ("reason",),
        {
            ("certificate_rejected",): 2,
            ("no_common_tls_version",): 1,
            ("no_common_cipher",): 1,
            ("dhe_key_exchange_failure",): 1,
            ("login_failed",): 2,
        },
    ),
    (
        "tds_handshake_failures_total",
        ("server", "stage", "reason"),
        {
            (S + "1434", "tls_handshake", "certificate_rejected"): 2,
            (S + "1435", "tls_handshake", "no_common_tls_version"): 1,
            (S + "1436", "tls_handshake", "dhe_key_exchange_failure"): 1,
            (S + "1437", "login", "login_failed"): 2,
            (S + "1439", "tls_handshake", "no_common_cipher"): 1,
        },
    ),
    # What the clients offered: tsql (GnuTLS) up to TLS 1.3 (4), python-tds TLS 1.2 only (3), the
    # tsql without DHE nor TLS 1.3 (1), the tsql limited to TLS 1.0 (1); none on NOT_SUP servers.
    (
        "tds_tls_client_hellos_total",
        ("max_version",),
        {("TLSv1.3",): 4, ("TLSv1.2",): 4, ("TLSv1.0",): 1},
    ),
    (
        "tds_tls_handshakes_total",
        ("kx", "result"),
        {("ecdhe", "completed"): 4, ("ecdhe", "failed"): 2, ("dhe", "failed"): 1},
    ),
    # The clients that reject the certificate just close; the TLS 1.2-only and the DHE-only
    # servers alert.
    (
        "tds_tls_alerts_total",
        ("side", "description"),
        {("server", "protocol_version"): 1, ("server", "handshake_failure"): 1},
    ),
    (
        "tds_prelogin_encryption_total",
        ("client", "server_setting"),
        {
            ("OFF", "OFF"): 2,
            ("ON", "ON"): 7,
            ("NOT_SUP", "NOT_SUP"): 2,
            ("OFF", "NOT_SUP"): 1,
        },
    ),
    # Full encryption hides the login answer: "unknown".
    (
        "tds_login_results_total",
        ("result", "error"),
        {("ack", ""): 3, ("unknown", ""): 2, ("error", "18456"): 2},
    ),
    # The DHE reset. (Only RSTs: after its protocol_version alert the TLS 1.2-only server and
    # tsql both close at once, so which FIN comes first, and whether that close is abnormal,
    # varies from run to run.)
    (
        'tds_abnormal_closes_total{kind="rst"}',
        ("server", "stage", "side"),
        {(S + "1436", "tls_handshake", "server"): 1},
    ),
    (
        "tds_handshake_duration_seconds_count",
        ("encryption",),
        {("login_only",): 2, ("none",): 1, ("full",): 2},
    ),
    (
        "tds_server_certificate_info",
        ("server", "issuer", "key_bits"),
        {
            (S + port, "CN=tdswatch e2e CA", "2048"): 1
            for port in ("1433", "1434", "1436")
        },
    ),
]

# Agent health, only in the live run: the agent's capture saw the traffic and lost nothing.
LIVE = [
    ("sum(tdswatch_capture_kernel_dropped_packets_total)", lambda v: v == 0, "== 0"),
    ("sum(tdswatch_capture_received_packets_total)", lambda v: v > 0, "> 0"),
]


def get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")


def promql(prom, query):
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    _, body = get(url)
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise RuntimeError(f"{query}: {doc}")
    return doc["data"]["result"]


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """[(name, {label: value}, float)] from Prometheus text or OpenMetrics."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparsable line: {line!r}")
        labels = dict(LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def sum_by(samples, selector, by):
    """`sum by (BY) (SELECTOR)` over parsed samples; SELECTOR is NAME or NAME{l="v",...}."""
    metric, _, matchers = selector.partition("{")
    want = dict(LABEL.findall(matchers))
    acc = {}
    for name, labels, value in samples:
        if name == metric and all(labels.get(k, "") == v for k, v in want.items()):
            key = tuple(labels.get(b, "") for b in by)
            acc[key] = acc.get(key, 0) + value
    return {k: int(v) for k, v in acc.items() if v != 0}


def prom_sum_by(prom, metric, by):
    res = promql(prom, f"sum by ({', '.join(by)}) ({metric})")
    return {
        tuple(r["metric"].get(b, "") for b in by): int(float(r["value"][1]))
        for r in res
        if float(r["value"][1]) != 0
    }


def wait(secs, what, cond):
    end = time.time() + secs
    last = None
    while time.time() < end:
        try:
            ok, last = cond()
            if ok:
                return 0
        except Exception as e:  # not up yet: try again until the deadline
            last = e
        time.sleep(0.2)
    print(f"{what}: gave up after {secs}s (last: {last})", file=sys.stderr)
    return 1


def main():
    cmd = sys.argv[1]
    if cmd == "get":
        status, _ = get(sys.argv[2])
        return 0 if status == 200 else 1
    if cmd == "wait-agent":
        url, n, secs = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

        def cond():
            got = sum(sum_by(parse_exposition(get(url)[1]), "tds_connections_total", ()).values())
            return got == n, got

        return wait(secs, f"agent counting {n} connections", cond)
    if cmd == "wait-scrape":
        prom, t, secs = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])

        def cond():
            res = promql(prom, 'timestamp(up{job="tdswatch"} == 1)')
            ts = max((float(r["value"][1]) for r in res), default=0.0)
            return ts > t, ts

        return wait(secs, "a scrape after the traffic", cond)
    if cmd == "compare":
        prom, analyze_file, events_file = sys.argv[2:5]
        with open(analyze_file) as f:
            analyzed = parse_exposition(f.read())
        bad = 0
        for metric, by, expected in EXPECT:
            live = prom_sum_by(prom, metric, by)
            offline = sum_by(analyzed, metric, by)
            query = f"sum by ({', '.join(by)}) ({metric})"
            for what, got in (("PromQL", live), ("analyze", offline)):
                if got != expected:
                    bad += 1
                    print(f"MISMATCH {what} {query}:\n  got      {sorted(got.items())}\n"
                          f"  expected {sorted(expected.items())}", file=sys.stderr)
            if live == expected == offline:
                print(f"ok: {query} -> {sorted(live.items())}")
        for query, ok, want in LIVE:
            res = promql(prom, query)
            value = float(res[0]["value"][1]) if res else None
            if value is None or not ok(value):
                bad += 1
                print(f"MISMATCH PromQL {query}: got {value}, expected {want}", file=sys.stderr)
            else:
                print(f"ok: {query} -> {value:g}")
        with open(events_file) as f:
            text = f.read()
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        if len(records) != CONNECTIONS:
            bad += 1
            print(f"event log: {len(records)} records, expected {CONNECTIONS}", file=sys.stderr)
        for secret in ("e2e_user", "e2e-not-a-secret", "SELECT"):
            for doc in (text, open(analyze_file).read()):
                if secret in doc:
                    bad += 1
                    print(f"a credential or SQL text leaked: {secret!r}", file=sys.stderr)
        return 1 if bad else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
