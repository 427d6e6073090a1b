"""HTTP and PromQL helpers for tests/e2e/prometheus.sh (standard library only).

  check.py get URL                         exit 0 when URL answers 200
  check.py connections                     print how many connections the expectations cover
  check.py wait-agent METRICS_URL N SECS   wait until the agent counts N connections
  check.py wait-scrape PROM_URL T SECS     wait until Prometheus scraped the agent after time T
  check.py rules PROM_URL RULES_YML SECS
      Prometheus loaded every rule of RULES_YML, all healthy; every recording rule has data;
      the alerts pending or firing are exactly ALERTS below (waits up to SECS for them)
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

# The scripted mix (run_mix in prometheus.sh), 39 connections. Clients: tsql (FreeTDS, GnuTLS;
# offers up to TLS 1.3), python-tds (pyOpenSSL; TLS 1.2 only), tedious (Node; TLS 1.2 only in
# TDS 7.x, 1.3 in strict), msodbc18 (mssql-python, system OpenSSL; up to TLS 1.3), tiberius
# (native-tls = system OpenSSL; up to TLS 1.3, sends ENCRYPT_REQ for `full`).
#   1433 OFF, TLS <= 1.2:    tsql, python-tds, msodbc18, tiberius: established, login_only
#   1434 ON, TLS <= 1.2:     tsql, python-tds, tedious, msodbc18, tiberius: established, full;
#                            the same five rejecting the certificate (another CA; msodbc18: the
#                            system store): certificate_rejected, but tedious `closed` (Node
#                            completes the handshake, then checks the certificate and closes)
#   1435 TLS 1.2 only:       tsql, tedious, msodbc18 limited to TLS 1.0: no_common_tls_version
#   1436 DHE + RST after the ClientKeyExchange: tsql, python-tds, tedious, msodbc18, tiberius:
#                            dhe_key_exchange_failure
#   1437 NOT_SUP, ERROR 18456: tsql, python-tds, tedious, msodbc18, tiberius: login_failed, none
#   1438 NOT_SUP:            tsql, python-tds, tedious, msodbc18, tiberius: established, none
#   1439 DHE only:           tsql, tedious, msodbc18 without DHE: no_common_cipher
#   1440 TDS 8.0 strict:     tedious, msodbc18: established, strict
#   1441 ARIA only:          tiberius: no_common_cipher
#   1442 TLS 1.0 only:       tiberius (TLS 1.2-1.3): no_common_tls_version
CONNECTIONS = 39
S = "10.201.0.1:"

# (metric or selector, labels to sum by, {label values: expected count}); label sets not
# listed must be absent (zero).
EXPECT = [
    ("tds_connections_total", ("outcome",), {("established",): 16, ("failed",): 23}),
    (
        "tds_connections_total",
        ("server", "encryption", "outcome"),
        {
            (S + "1433", "login_only", "established"): 4,
            (S + "1434", "full", "established"): 5,
            (S + "1434", "full", "failed"): 5,
            (S + "1435", "full", "failed"): 3,
            (S + "1436", "full", "failed"): 5,
            (S + "1437", "none", "failed"): 5,
            (S + "1438", "none", "established"): 5,
            (S + "1439", "full", "failed"): 3,
            (S + "1440", "strict", "established"): 2,
            (S + "1441", "full", "failed"): 1,
            (S + "1442", "full", "failed"): 1,
        },
    ),
    (
        "tds_handshake_failures_total",
        ("reason",),
        {
            ("certificate_rejected",): 4,
            ("closed",): 1,
            ("no_common_tls_version",): 4,
            ("no_common_cipher",): 4,
            ("dhe_key_exchange_failure",): 5,
            ("login_failed",): 5,
        },
    ),
    (
        "tds_handshake_failures_total",
        ("server", "stage", "reason"),
        {
            (S + "1434", "tls_handshake", "certificate_rejected"): 4,
            # tedious: the handshake completed, the client closed before LOGIN7
            (S + "1434", "tls_handshake", "closed"): 1,
            (S + "1435", "tls_handshake", "no_common_tls_version"): 3,
            (S + "1436", "tls_handshake", "dhe_key_exchange_failure"): 5,
            (S + "1437", "login", "login_failed"): 5,
            (S + "1439", "tls_handshake", "no_common_cipher"): 3,
            (S + "1441", "tls_handshake", "no_common_cipher"): 1,
            (S + "1442", "tls_handshake", "no_common_tls_version"): 1,
        },
    ),
    # What the clients offered (none on NOT_SUP servers). TLSv1.3: tsql x4 (login-only, full,
    # wrong CA, DHE reset), msodbc18 x5 (login-only, full, system store, DHE reset, strict),
    # tiberius x6, tedious strict. TLSv1.2: python-tds x4, tedious x4 in TDS 7.x, tsql without
    # DHE (and TLS 1.3), msodbc18 with its ECDHE-only OpenSSL config. TLSv1.0: the three forced.
    (
        "tds_tls_client_hellos_total",
        ("max_version",),
        {("TLSv1.3",): 16, ("TLSv1.2",): 10, ("TLSv1.0",): 3},
    ),
    # A result once a ServerHello was seen: completed on the 12 established TLS connections and
    # tedious's rejection (its handshake ends before it checks the certificate); failed on the
    # other four rejections and the five DHE resets. No ServerHello: the version and suite
    # failures. TLS 1.3 (strict) counts as ecdhe.
    (
        "tds_tls_handshakes_total",
        ("kx", "result"),
        {("ecdhe", "completed"): 12, ("ecdhe", "failed"): 4, ("dhe", "failed"): 5},
    ),
    # The TLS 1.2-only server alerts the three TLS 1.0 clients, and the TLS 1.0-only server
    # tiberius (protocol_version: it finds no version of its own in the client's
    # supported_versions, so there is no ServerHello); the DHE-only and ARIA-only servers
    # alert the four without a common suite. Of the clients that reject the certificate only
    # tiberius (OpenSSL, through its TDS stream wrapper) sends its alert (unknown_ca); tsql,
    # python-tds and msodbc18 just close, tedious closes after the handshake.
    (
        "tds_tls_alerts_total",
        ("side", "description"),
        {
            ("server", "protocol_version"): 4,
            ("server", "handshake_failure"): 4,
            ("client", "unknown_ca"): 1,
        },
    ),
    # Strict connections have no clear PRELOGIN. tiberius's `full` sends REQ; msodbc18's
    # Encrypt=no and tsql's `request` send OFF; python-tds without a CA, tedious without encrypt,
    # tiberius `none` and tsql `off` send NOT_SUP.
    (
        "tds_prelogin_encryption_total",
        ("client", "server_setting"),
        {
            ("OFF", "OFF"): 4,
            ("ON", "ON"): 18,
            ("REQ", "ON"): 5,
            ("NOT_SUP", "NOT_SUP"): 7,
            ("OFF", "NOT_SUP"): 3,
        },
    ),
    # Full and strict encryption hide the login answer: "unknown". No answer at all after a
    # failed TLS handshake.
    (
        "tds_login_results_total",
        ("result", "error"),
        {("ack", ""): 9, ("unknown", ""): 7, ("error", "18456"): 5},
    ),
    # The DHE resets, and tiberius rejecting the certificate: its OpenSSL checks the Certificate
    # message as soon as it reads it and reads no further, so the rest of the server's flight
    # (ServerKeyExchange, ServerHelloDone) is still unread in the socket when the client closes
    # it, and the kernel sends a RST. (Only RSTs: after an alert the server and the client both
    # close at once, so which FIN comes first, and whether that close is abnormal, varies from
    # run to run; so does it after tiberius's close_notify at the end of a full-TLS session.)
    (
        'tds_abnormal_closes_total{kind="rst"}',
        ("server", "stage", "side"),
        {
            (S + "1436", "tls_handshake", "server"): 5,
            (S + "1434", "tls_handshake", "client"): 1,
        },
    ),
    (
        "tds_handshake_duration_seconds_count",
        ("encryption",),
        {("login_only",): 4, ("none",): 5, ("full",): 5, ("strict",): 2},
    ),
    # Certificates seen in clear (TLS 1.2 ServerHello flights); strict negotiates TLS 1.3, where
    # the certificate is encrypted.
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
    # Nothing discarded or pushed out inside the agent, and every byte parsed.
    ("sum(tdswatch_dropped_segments_total)", lambda v: v == 0, "== 0"),
    ("sum(tdswatch_evicted_connections_total)", lambda v: v == 0, "== 0"),
    ("sum(tdswatch_parse_errors_total)", lambda v: v == 0, "== 0"),
]


# The alerts the mix must set off (all have a `for:`, so they are pending when the test looks):
# (alertname, server). Not expected: the failure-ratio alert (no server reaches its floor of 20
# attempts), the DHE-intermittent one (port 1436 fails every DHE handshake: not a small share),
# legacy TLS negotiated (no TLS 1.0 handshake completes), encryption mismatch, agent health.
ALERTS = {
    ("TdsNoCommonTlsVersion", S + "1435"),
    ("TdsNoCommonTlsVersion", S + "1442"),
    ("TdsNoCommonCipherSuite", S + "1439"),
    ("TdsNoCommonCipherSuite", S + "1441"),
    ("TdsCertificateRejected", S + "1434"),
    # tsql, tedious and msodbc18 limited to TLS 1.0 offered nothing newer.
    ("TdsClientsOfferingLegacyTlsOnly", S + "1435"),
    # The test CA issues the server certificate for 2 days: every server whose certificate
    # travelled in clear (TLS 1.2) expires soon. 1440 is strict TLS 1.3 (certificate encrypted).
    ("TdsServerCertificateExpiringSoon", S + "1433"),
    ("TdsServerCertificateExpiringSoon", S + "1434"),
    ("TdsServerCertificateExpiringSoon", S + "1436"),
}


def check_rules(prom, rules_file, secs):
    """Rules loaded and healthy, recording rules with data, exactly the expected alerts."""
    import yaml  # PyYAML: installed by deploy/prometheus/check.sh, which runs before the e2e

    with open(rules_file) as f:
        doc = yaml.safe_load(f)
    want_records = {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    want_alerts = {r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r}
    _, body = get(prom + "/api/v1/rules")
    groups = json.loads(body)["data"]["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    bad = 0
    names = {r["name"] for r in loaded}
    if names != want_records | want_alerts:
        bad += 1
        print(f"MISMATCH rules loaded: {sorted(names ^ (want_records | want_alerts))}",
              file=sys.stderr)
    for r in loaded:
        if r.get("health") != "ok" or r.get("lastError"):
            bad += 1
            print(f"MISMATCH rule {r['name']}: health {r.get('health')} {r.get('lastError')}",
                  file=sys.stderr)
    print(f"ok: {len(loaded)} rules loaded ({len(want_records)} recording, "
          f"{len(want_alerts)} alerting), all healthy" if not bad else "rules: unhealthy")
    for record in sorted(want_records):
        # Evaluated every second: wait for the first evaluation after the traffic.
        if wait(secs, f"recording rule {record}", lambda: (bool(promql(prom, record)), None)):
            bad += 1
            print(f"MISMATCH recording rule {record}: no data", file=sys.stderr)
        else:
            print(f"ok: recording rule {record} has data")

    def active():
        _, body = get(prom + "/api/v1/alerts")
        alerts = json.loads(body)["data"]["alerts"]
        got = {(a["labels"]["alertname"], a["labels"].get("server", "")) for a in alerts
               if a["state"] in ("pending", "firing")}
        return got == ALERTS, got

    if wait(secs, "the expected alerts", active):
        _, got = active()
        bad += 1
        print(f"MISMATCH alerts:\n  unexpected {sorted(got - ALERTS)}\n"
              f"  missing    {sorted(ALERTS - got)}", file=sys.stderr)
    else:
        print(f"ok: alerts pending or firing -> {sorted(ALERTS)}")
    return 1 if bad else 0


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
    if cmd == "connections":
        print(CONNECTIONS)
        return 0
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
    if cmd == "rules":
        return check_rules(sys.argv[2], sys.argv[3], float(sys.argv[4]))
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
