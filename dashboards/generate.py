#!/usr/bin/env python3
"""Generates tdswatch's Grafana dashboards (standard library only).

    python3 dashboards/generate.py            # writes the two JSON files beside this script
    python3 dashboards/generate.py --stdout   # prints them instead (used by check.py's drift check)

The dashboards are classic dashboard JSON (schemaVersion 39, Grafana 10 and 11), import-ready
without `__inputs`: the Prometheus data source is the `datasource` variable, so the same file
works in Grafana's "Import" dialog and through a provisioning sidecar. Output is deterministic
(sorted keys, indent 2), so the committed files can be compared with a fresh run.

Every query filters on the `job` and `instance` variables, and on `server` for the `tds_*`
families (which all carry that label); every rate() uses `$__rate_interval`. Panels titled
"since agent start" read the counters as they are (the agent's lifetime totals), because
increase() over a range misses the first increment of a series born inside it, and one
intermittent DHE failure is exactly what users look for.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"

# Label matchers shared by every query.
JI = 'job=~"$job",instance=~"$instance"'
JIS = JI + ',server=~"$server"'

# Highest ClientHello versions below TLS 1.2, as the agent spells them ("SSLv3", "TLSv1.0",
# "TLSv1.1", a raw "0x0302" for an unnamed one); the same set as the text report's.
OLD_TLS = "SSLv2|SSLv3|TLSv1|TLSv1[.]0|TLSv1[.]1|0x02[0-9a-f][0-9a-f]|0x030[0-2]"

# Certificate signature algorithms that break or weaken SQL Server's TLS (tds-primer §4: MD5,
# SHA-224, SHA-512 fail with TLS 1.2 on some Windows builds; SHA-1 is weak): the same list as the
# TdsServerCertificateWeakSignature alert (deploy/prometheus/tdswatch.rules.yml).
RISKY_SIG = (
    "md5WithRSAEncryption|sha1WithRSAEncryption|sha224WithRSAEncryption|sha512WithRSAEncryption|"
    "ecdsa-with-SHA1|ecdsa-with-SHA224|ecdsa-with-SHA512|dsa-with-sha1"
)

TLS_REASONS = (
    "no_common_tls_version|no_common_cipher|weak_certificate_signature|certificate_rejected|"
    "dhe_key_exchange_failure|key_exchange_failure|tls_alert|strict_mismatch|encryption_mismatch"
)


# Label matchers used inside the f-strings below (Python 3.11 allows no backslash there).
EST = 'outcome="established"'
DHE = 'kx="dhe"'
DHE_FAILED = 'kx="dhe",result="failed"'
OTHER_KX = 'kx!="dhe"'
OTHER_KX_FAILED = 'kx!="dhe",result="failed"'
OLD_MAX = f'max_version=~"{OLD_TLS}"'
OLD_VERSION = f'version=~"{OLD_TLS}"'
TLS_REASON = f'reason=~"{TLS_REASONS}"'
RISKY = f'signature_algorithm=~"{RISKY_SIG}"'


def sel(metric, extra="", server=True):
    """metric{job=~"$job",instance=~"$instance"[,server=~"$server"][,extra]}"""
    m = JIS if server else JI
    if extra:
        m += "," + extra
    return f"{metric}{{{m}}}"


def rate(metric, extra="", server=True):
    return f"rate({sel(metric, extra, server)}[{RI}])"


def up():
    return f"(up{{{JI}}} == 1)"


class Board:
    """Lays panels out left to right in rows of 24 columns, with stable ids."""

    def __init__(self):
        self.panels = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        self.newline()
        self.panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "id": self._id(),
                "panels": [],
                "title": title,
                "type": "row",
            }
        )
        self.y += 1

    def newline(self):
        if self.x:
            self.y += self.row_h
        self.x = 0
        self.row_h = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)
        if self.x == 24:
            self.newline()


def target(expr, legend="", ref="A", instant=False, table=False):
    t = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if table:
        t["format"] = "table"
    return t


def refs(exprs):
    """[(expr, legend)] -> targets A, B, C …"""
    return [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(exprs)]


def thresholds(*steps):
    """thresholds(("green", None), ("red", 1)) -> Grafana absolute thresholds."""
    return {
        "mode": "absolute",
        "steps": [{"color": c, "value": v} for c, v in steps],
    }


GREEN = thresholds(("green", None))


def timeseries(title, description, targets, unit, stack=None, minmax=None, legend_table=False):
    custom = {
        "drawStyle": "line",
        "fillOpacity": 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "none"},
    }
    if stack:
        custom["stacking"] = {"group": "A", "mode": stack}
        custom["fillOpacity"] = 60
    defaults = {"custom": custom, "unit": unit, "thresholds": GREEN, "color": {"mode": "palette-classic"}}
    for key, value in zip(("min", "max"), minmax or ()):
        if value is not None:
            defaults[key] = value
    return {
        "datasource": DS,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {
                "calcs": ["lastNotNull", "max"] if legend_table else [],
                "displayMode": "table" if legend_table else "list",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
        "title": title,
        "type": "timeseries",
    }


def stat(title, description, expr, unit, steps=GREEN, decimals=None):
    defaults = {"unit": unit, "thresholds": steps, "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "datasource": DS,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        },
        "targets": [target(expr)],
        "title": title,
        "type": "stat",
    }


def bargauge(title, description, expr, legend, unit, steps=GREEN):
    return {
        "datasource": DS,
        "description": description,
        "fieldConfig": {
            "defaults": {"unit": unit, "min": 0, "thresholds": steps, "color": {"mode": "thresholds"}},
            "overrides": [],
        },
        "options": {
            "displayMode": "basic",
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showUnfilled": True,
            "valueMode": "color",
        },
        "targets": [target(expr, legend, instant=True)],
        "title": title,
        "type": "bargauge",
    }


def table(title, description, columns, unit="short", exclude=(), sort=None):
    """columns: [(expr, column name, unit or None, extra field config or None)], instant queries
    merged into one row per label set."""
    targets = []
    rename = {}
    overrides = []
    for i, (expr, name, col_unit, extra) in enumerate(columns):
        ref = chr(ord("A") + i)
        targets.append(target(expr, ref=ref, instant=True, table=True))
        rename[f"Value #{ref}"] = name
        props = []
        if col_unit:
            props.append({"id": "unit", "value": col_unit})
        for k, v in (extra or {}).items():
            props.append({"id": k, "value": v})
        if props:
            overrides.append({"matcher": {"id": "byName", "options": name}, "properties": props})
    # Organize excludes by the fields' original names ("Value #A"), before renaming.
    excluded = {"Time": True, "__name__": True}
    for original, name in rename.items():
        if name in exclude:
            excluded[original] = True
    options = {"cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}, "showHeader": True}
    if sort:
        options["sortBy"] = [{"displayName": sort, "desc": True}]
    return {
        "datasource": DS,
        "description": description,
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": GREEN, "custom": {"align": "auto", "filterable": True}},
            "overrides": overrides,
        },
        "options": options,
        "targets": targets,
        "title": title,
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": excluded, "renameByName": rename}},
        ],
        "type": "table",
    }


def variables():
    def query_var(name, label, query, multi):
        v = {
            "current": {},
            "datasource": DS,
            "definition": query,
            "hide": 0,
            "includeAll": multi,
            "label": label,
            "multi": multi,
            "name": name,
            "options": [],
            "query": query,
            "refresh": 2,
            "regex": "",
            "skipUrlSync": False,
            "sort": 1,
            "type": "query",
        }
        if multi:
            v["allValue"] = ".*"
        return v

    return {
        "list": [
            {
                "current": {},
                "hide": 0,
                "includeAll": False,
                "label": "Data source",
                "multi": False,
                "name": "datasource",
                "options": [],
                "query": "prometheus",
                "refresh": 1,
                "regex": "",
                "skipUrlSync": False,
                "type": "datasource",
            },
            query_var("job", "Job", "label_values(tdswatch_build_info, job)", False),
            query_var("instance", "Agent", 'label_values(tdswatch_build_info{job=~"$job"}, instance)', True),
            query_var(
                "server",
                "SQL Server",
                'label_values(tds_connections_total{job=~"$job",instance=~"$instance"}, server)',
                True,
            ),
        ]
    }


def dashboard(uid, title, description, board, tags):
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": False,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": ["tdswatch"],
                "targetBlank": False,
                "title": "tdswatch",
                "type": "dashboards",
            }
        ],
        "panels": board.panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": tags,
        "templating": variables(),
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# --------------------------------------------------------------------------------------------
# Overview


def overview():
    b = Board()
    conns = f"sum({rate('tds_connections_total')})"
    fails = f"sum({rate('tds_handshake_failures_total')})"
    # Handshake attempts = established connections + failed handshakes (probes and connections
    # with outcome unknown are neither), as in the alert rules' failure ratio. A family with no
    # series yet (no failure so far) counts as 0 wherever connections exist.
    f0 = f"({fails} or 0 * {conns})"
    e0 = f"(sum({rate('tds_connections_total', EST)}) or 0 * {conns})"
    ratio = f"{f0} / ({e0} + {f0})"
    conns_s = f"sum by (server) ({rate('tds_connections_total')})"
    f0_s = f"(sum by (server) ({rate('tds_handshake_failures_total')}) or 0 * {conns_s})"
    e0_s = f"(sum by (server) ({rate('tds_connections_total', EST)}) or 0 * {conns_s})"
    ratio_s = f"{f0_s} / ({e0_s} + {f0_s})"

    b.row("Connections and failures")
    b.add(stat("Connections / s", "SQL Server connections that ended, per second (every outcome).",
               conns, "cps"), 4, 4)
    b.add(stat("Handshake failures / s",
               "Failed handshakes per second (TCP probes excluded): tds_handshake_failures_total.",
               f0, "cps",
               thresholds(("green", None), ("red", 0.001))), 4, 4)
    b.add(stat("Failure ratio",
               "Failed handshakes / handshake attempts (established + failed; TCP probes and "
               "unknown outcomes left out), over the rate interval. NaN when none ended in it.",
               ratio, "percentunit",
               thresholds(("green", None), ("orange", 0.01), ("red", 0.05)), decimals=2), 4, 4)
    b.add(stat("Abnormal closes / s",
               "Connections closed by any RST or by the server's FIN first, per second.",
               f"sum({rate('tds_abnormal_closes_total')}) or 0 * {conns}", "cps",
               thresholds(("green", None), ("orange", 0.001))), 4, 4)
    b.add(stat("TCP probes / s",
               "Connections the client closed before any TDS byte (load balancer and Kubernetes "
               "probes, port scans); kept out of the failures.",
               f"sum({rate('tds_tcp_probes_total')}) or 0 * {conns}", "cps"), 4, 4)
    b.add(stat("Connections tracked now",
               "Connections in the agents' connection tables now (TDS or not yet known), all servers.",
               f"sum({sel('tdswatch_connections_tracked', server=False)})", "short"), 4, 4)

    b.add(timeseries("Connections / s by outcome",
                     "Connections that ended, by outcome: established, failed (probes included), "
                     "unknown (joined mid-stream, bytes lost, or still open when a capture ended).",
                     refs([(f"sum by (outcome) ({rate('tds_connections_total')})", "{{outcome}}")]),
                     "cps"), 12, 8)
    b.add(timeseries("Failure ratio",
                     "Failed handshakes / handshake attempts (established + failed), all selected "
                     "servers and per server.",
                     refs([(ratio, "all selected servers"), (ratio_s, "{{server}}")]),
                     "percentunit", minmax=(0, 1)), 12, 8)
    b.add(timeseries("Handshake failures / s by reason",
                     "The most specific reason the wire supports (tds-primer §5).",
                     refs([(f"sum by (reason) ({rate('tds_handshake_failures_total')})", "{{reason}}")]),
                     "cps", legend_table=True), 12, 8)
    b.add(timeseries("Handshake failures / s by stage",
                     "The stage each failed connection reached: syn, connected, prelogin, "
                     "tls_handshake, login.",
                     refs([(f"sum by (stage) ({rate('tds_handshake_failures_total')})", "{{stage}}")]),
                     "cps"), 12, 8)
    b.add(bargauge("Handshake failures by reason and stage (since agent start)",
                   "Counter totals since each agent started: a single intermittent failure stays "
                   "visible here.",
                   f"sum by (reason, stage) ({sel('tds_handshake_failures_total')})",
                   "{{reason}} at {{stage}}", "short",
                   thresholds(("green", None), ("red", 1))), 12, 8)
    b.add(table("Login results (since agent start)",
                "Login responses by result and SQL Server error number (18456: login failed). "
                "With full encryption the answer is not visible: result unknown.",
                [(f"sum by (server, result, error) ({sel('tds_login_results_total')})",
                  "Logins", None, None)],
                sort="Logins"), 12, 8)

    b.row("Abnormal closes")
    b.add(timeseries("Abnormal closes / s by side, kind and stage",
                     "kind rst: the first RST and who sent it; kind fin: the server closed first. "
                     "Stage: how far the handshake got.",
                     refs([(f"sum by (side, kind, stage) ({rate('tds_abnormal_closes_total')})",
                            "{{side}} {{kind}} at {{stage}}")]),
                     "cps", legend_table=True), 12, 8)
    b.add(bargauge("Abnormal closes by side, kind and stage (since agent start)",
                   "Counter totals since each agent started.",
                   f"sum by (side, kind, stage) ({sel('tds_abnormal_closes_total')})",
                   "{{side}} {{kind}} at {{stage}}", "short",
                   thresholds(("green", None), ("orange", 1))), 12, 8)

    b.row("Handshake latency")
    h = "tds_handshake_duration_seconds"
    b.add(timeseries("Handshake duration (SYN to login response)",
                     "Established connections only: the sum of the prelogin, TLS and login stage "
                     "durations (a lower bound: the client's think time between stages is left out).",
                     refs([
                         (f"histogram_quantile(0.5, sum by (le) ({rate(h + '_bucket')}))", "p50"),
                         (f"histogram_quantile(0.9, sum by (le) ({rate(h + '_bucket')}))", "p90"),
                         (f"histogram_quantile(0.99, sum by (le) ({rate(h + '_bucket')}))", "p99"),
                         (f"sum({rate(h + '_sum')}) / sum({rate(h + '_count')})", "mean"),
                     ]),
                     "s"), 12, 8)
    b.add(timeseries("Stage duration p95 by stage",
                     "prelogin: SYN to the PRELOGIN response; tls_handshake; login: LOGIN7 to the "
                     "login response.",
                     refs([(f"histogram_quantile(0.95, sum by (le, stage) "
                            f"({rate('tds_stage_duration_seconds_bucket')}))", "p95 {{stage}}")]),
                     "s"), 12, 8)

    b.row("Servers")
    total = sel("tds_connections_total")
    tf0 = f"(sum by (server) ({sel('tds_handshake_failures_total')}) or 0 * sum by (server) ({total}))"
    te0 = f"(sum by (server) ({sel('tds_connections_total', EST)}) or 0 * sum by (server) ({total}))"
    b.add(table("Servers",
                "One row per SQL Server (address:port, or other beyond the agent's server cap). "
                "Counts since agent start; rate and p95 over the rate interval / since start.",
                [
                    (f"sum by (server) ({total})", "Connections", "short", None),
                    (te0, "Established", "short", None),
                    (tf0, "Handshake failures", "short", None),
                    (f"{tf0} / ({te0} + {tf0})",
                     "Failure ratio", "percentunit",
                     {"custom.cellOptions": {"type": "color-text"},
                      "thresholds": thresholds(("green", None), ("orange", 0.01), ("red", 0.05))}),
                    (f"sum by (server) ({rate('tds_connections_total')})", "Connections / s", "cps", None),
                    (f"histogram_quantile(0.95, sum by (server, le) ({sel(h + '_bucket')}))",
                     "Handshake p95 (since start)", "s", None),
                    (f"sum by (server) ({sel('tds_connections_open')}) or 0 * sum by (server) ({total})",
                     "Open now", "short", None),
                ],
                sort="Connections"), 24, 9)

    b.row("Agent health")
    b.add(table("Agents",
                "Each agent's version (tdswatch_build_info) and whether Prometheus scrapes it (up).",
                [
                    (sel("tdswatch_build_info", server=False), "build_info", None, None),
                    (f"up{{{JI}}}", "Up", "bool_yes_no", None),
                ],
                exclude=["build_info"]), 8, 7)
    b.add(timeseries("Capture: packets received / s by interface",
                     "Packets the kernel BPF filter passed to tdswatch, per interface (live agent).",
                     refs([(f"sum by (instance, interface) "
                            f"({rate('tdswatch_capture_received_packets_total', server=False)})",
                            "{{instance}} {{interface}}")]),
                     "pps"), 8, 7)
    b.add(timeseries("Capture: packets dropped / s by interface",
                     "kernel: tdswatch's ring buffer was full; interface: the NIC or driver dropped. "
                     "Anything above 0 means verdicts on missing bytes.",
                     refs([
                         (f"sum by (instance, interface) "
                          f"({rate('tdswatch_capture_kernel_dropped_packets_total', server=False)})",
                          "{{instance}} {{interface}} kernel"),
                         (f"sum by (instance, interface) "
                          f"({rate('tdswatch_capture_interface_dropped_packets_total', server=False)})",
                          "{{instance}} {{interface}} interface"),
                     ]),
                     "pps"), 8, 7)
    b.add(timeseries("Connections evicted / s by cause",
                     "Connections pushed out of the table by its limits: capacity (max_connections) "
                     "or memory (buffered bytes over the cap). Their verdicts are lost.",
                     refs([(f"sum by (instance, cause) "
                            f"({rate('tdswatch_evicted_connections_total', server=False)})",
                            "{{instance}} {{cause}}")]),
                     "cps"), 8, 7)
    b.add(timeseries("Parse errors and dropped segments / s",
                     "Parse errors by layer (decode: frames; tds: streams that stopped parsing as "
                     "TDS; tls: records that did not parse), segments tdswatch discarded, stream "
                     "gaps (bytes lost to the capture).",
                     refs([
                         (f"sum by (instance, layer) "
                          f"({rate('tdswatch_parse_errors_total', server=False)})",
                          "{{instance}} parse errors {{layer}}"),
                         (f"sum by (instance) ({rate('tdswatch_dropped_segments_total', server=False)})",
                          "{{instance}} dropped segments"),
                         (f"sum by (instance) ({rate('tdswatch_stream_gaps_total', server=False)})",
                          "{{instance}} stream gaps"),
                     ]),
                     "cps"), 8, 7)
    b.add(timeseries("Connections tracked and buffered bytes",
                     "The agents' connection tables now (left) and the bytes held in reassembly "
                     "buffers (right).",
                     refs([
                         (f"sum by (instance) ({sel('tdswatch_connections_tracked', server=False)})",
                          "{{instance}} connections"),
                         (f"sum by (instance) ({sel('tdswatch_buffered_bytes', server=False)})",
                          "{{instance}} buffered bytes"),
                     ]),
                     "short"), 8, 7)
    ts = b.panels[-1]
    ts["fieldConfig"]["overrides"] = [
        {
            "matcher": {"id": "byRegexp", "options": ".*buffered bytes"},
            "properties": [
                {"id": "unit", "value": "bytes"},
                {"id": "custom.axisPlacement", "value": "right"},
            ],
        }
    ]
    b.add(timeseries("Frames and TCP segments / s",
                     "What the agents read: frames, TCP segments, retransmissions, segments seen "
                     "twice (captured on two interfaces), flows on a watched port that were not TDS.",
                     refs([
                         (f"sum by (instance) ({rate('tdswatch_frames_total', server=False)})",
                          "{{instance}} frames"),
                         (f"sum by (instance) ({rate('tdswatch_tcp_segments_total', server=False)})",
                          "{{instance}} TCP segments"),
                         (f"sum by (instance) ({rate('tdswatch_retransmitted_segments_total', server=False)})",
                          "{{instance}} retransmissions"),
                         (f"sum by (instance) ({rate('tdswatch_duplicate_segments_total', server=False)})",
                          "{{instance}} duplicates"),
                         (f"sum by (instance) ({rate('tdswatch_non_tds_flows_total', server=False)})",
                          "{{instance}} non-TDS flows"),
                     ]),
                     "pps"), 16, 7)
    b.add(timeseries("Connections open by stage",
                     "SQL Server connections tracked now, by the stage they reached (selected "
                     "servers).",
                     refs([(f"sum by (stage) ({sel('tds_connections_open')}) or on () 0 * sum({up()})",
                            "{{stage}}")]),
                     "short"), 8, 7)

    return dashboard(
        "tdswatch-overview",
        "tdswatch / Overview",
        "SQL Server (TDS) connection handshakes seen by tdswatch: connections, failures by reason "
        "and stage, abnormal closes, handshake latency, servers, agent health.",
        b,
        ["tdswatch", "sql-server", "tds"],
    )


# --------------------------------------------------------------------------------------------
# TLS migration


def tls_migration():
    b = Board()
    hs = "tds_tls_handshakes_total"
    ch = "tds_tls_client_hellos_total"

    def share_since_start(metric, extra):
        part = f"sum({sel(metric, extra)})"
        whole = f"sum({sel(metric)})"
        return f"({part} or 0 * {whole}) / {whole}"

    b.row("TLS versions")
    b.add(stat("ClientHellos offering at most TLS 1.1 (since agent start)",
               "Share of ClientHellos whose highest offered version is below TLS 1.2: the clients "
               "that break when servers drop TLS 1.0/1.1.",
               share_since_start(ch, OLD_MAX), "percentunit",
               thresholds(("green", None), ("orange", 0.0001), ("red", 0.05)), decimals=2), 6, 4)
    b.add(stat("Handshakes negotiated below TLS 1.2 (since agent start)",
               "Share of TLS handshakes (with a ServerHello) that negotiated SSLv3, TLS 1.0 or 1.1.",
               share_since_start(hs, OLD_VERSION), "percentunit",
               thresholds(("green", None), ("orange", 0.0001), ("red", 0.05)), decimals=2), 6, 4)
    b.add(stat("DHE share of handshakes (since agent start)",
               "Share of TLS handshakes that negotiated a TLS_DHE_* suite (or an ffdhe group in "
               "TLS 1.3): the ones exposed to the intermittent DHE leading-zero failure.",
               share_since_start(hs, DHE), "percentunit",
               thresholds(("green", None), ("orange", 0.0001)), decimals=2), 6, 4)
    b.add(stat("DHE failure ratio (since agent start)",
               "Failed / all DHE handshakes. A small steady ratio (about 1 in 256) on DHE only is "
               "the KB4557473 leading-zero bug. No data: no DHE handshake seen.",
               f"(sum({sel(hs, DHE_FAILED)}) or 0 * sum({sel(hs, DHE)})) "
               f"/ sum({sel(hs, DHE)})", "percentunit",
               thresholds(("green", None), ("red", 0.0001)), decimals=2), 6, 4)

    def share_by(metric, label, extra=""):
        return (f"sum by ({label}) ({rate(metric, extra)}) / ignoring ({label}) group_left "
                f"sum({rate(metric, extra)})")

    b.add(timeseries("Negotiated TLS versions (share)",
                     "Share of TLS handshakes per negotiated version (ServerHello), stacked.",
                     refs([(share_by(hs, "version"), "{{version}}")]),
                     "percentunit", stack="normal", minmax=(0, 1)), 12, 8)
    b.add(timeseries("Highest version offered by clients (share)",
                     "Share of ClientHellos per highest offered version, stacked.",
                     refs([(share_by(ch, "max_version"), "{{max_version}}")]),
                     "percentunit", stack="normal", minmax=(0, 1)), 12, 8)
    b.add(timeseries("Clients still offering < TLS 1.2, per server",
                     "ClientHellos per second whose highest offered version is below TLS 1.2, by "
                     "server and version.",
                     refs([(f"sum by (server, max_version) ({rate(ch, OLD_MAX)})",
                            "{{server}} {{max_version}}")]),
                     "cps", legend_table=True), 12, 8)
    b.add(table("Clients still offering < TLS 1.2, per server (since agent start)",
                "ClientHellos below TLS 1.2 by server and highest offered version, and their share "
                "of that server's ClientHellos.",
                [
                    (f"sum by (server, max_version) ({sel(ch, OLD_MAX)})",
                     "ClientHellos", "short", None),
                    (f"sum by (server, max_version) ({sel(ch, OLD_MAX)}) "
                     f"/ ignoring (max_version) group_left sum by (server) ({sel(ch)})",
                     "Share of the server's ClientHellos", "percentunit", None),
                ],
                sort="ClientHellos"), 12, 8)

    b.row("Cipher suites and key exchange")
    b.add(bargauge("Negotiated cipher suites (since agent start)",
                   "TLS handshakes by the suite in the ServerHello (IANA names).",
                   f"sum by (suite) ({sel(hs)})", "{{suite}}", "short"), 12, 8)
    b.add(timeseries("Key exchange share (DHE share)",
                     "Share of TLS handshakes by key exchange: rsa, dhe, ecdhe (TLS 1.3: from the key "
                     "share group, ffdhe counts as dhe).",
                     refs([(share_by(hs, "kx"), "{{kx}}")]),
                     "percentunit", stack="normal", minmax=(0, 1)), 12, 8)
    b.add(timeseries("DHE failure ratio vs other key exchanges",
                     "Failed / all TLS handshakes, DHE against the rest. The DHE leading-zero bug "
                     "shows as a steady ratio on DHE only.",
                     refs([
                         (f"(sum({rate(hs, DHE_FAILED)}) or 0 * "
                          f"sum({rate(hs, DHE)})) / sum({rate(hs, DHE)})", "DHE"),
                         (f"(sum({rate(hs, OTHER_KX_FAILED)}) or 0 * "
                          f"sum({rate(hs, OTHER_KX)})) / sum({rate(hs, OTHER_KX)})",
                          "other key exchanges"),
                     ]),
                     "percentunit", minmax=(0, None)), 12, 8)
    b.add(table("DHE handshakes per server (since agent start)",
                "Per server: DHE handshakes, how many failed, the failure ratio and DHE's share of "
                "the server's TLS handshakes.",
                [
                    (f"sum by (server) ({sel(hs, DHE)})", "DHE handshakes", "short", None),
                    (f"sum by (server) ({sel(hs, DHE_FAILED)}) or 0 * "
                     f"sum by (server) ({sel(hs, DHE)})", "DHE failed", "short", None),
                    (f"(sum by (server) ({sel(hs, DHE_FAILED)}) or 0 * "
                     f"sum by (server) ({sel(hs, DHE)})) / sum by (server) ({sel(hs, DHE)})",
                     "DHE failure ratio", "percentunit",
                     {"custom.cellOptions": {"type": "color-text"},
                      "thresholds": thresholds(("green", None), ("red", 0.0001))}),
                    (f"sum by (server) ({sel(hs, DHE)}) / sum by (server) ({sel(hs)})",
                     "DHE share", "percentunit", None),
                ],
                sort="DHE handshakes"), 12, 8)
    b.add(timeseries("ClientHellos offering DHE suites (share)",
                     "Whether the client offered any TLS_DHE_* suite: turning DHE off on the clients "
                     "(or the server) avoids the leading-zero failure.",
                     refs([(share_by(ch, "dhe_offered"), "DHE offered: {{dhe_offered}}")]),
                     "percentunit", stack="normal", minmax=(0, 1)), 12, 8)
    b.add(timeseries("TLS alerts / s by sender and description",
                     "Clear TLS alerts (protocol_version: no common version; handshake_failure: no "
                     "common suite; unknown_ca …); encrypted alerts count as description encrypted.",
                     refs([(f"sum by (side, description) ({rate('tds_tls_alerts_total')})",
                            "{{side}} {{description}}")]),
                     "cps", legend_table=True), 12, 8)
    b.add(timeseries("TLS and encryption failures / s by reason",
                     "Handshake failures whose reason is about TLS or encryption settings.",
                     refs([(f"sum by (reason) ({rate('tds_handshake_failures_total', TLS_REASON)})",
                            "{{reason}}")]),
                     "cps", legend_table=True), 12, 8)
    b.add(timeseries("Connections / s by encryption",
                     "Connections that ended, by encryption: none, login_only, full, strict (TDS 8.0), "
                     "unknown.",
                     refs([(f"sum by (encryption) ({rate('tds_connections_total')})", "{{encryption}}")]),
                     "cps", stack="normal"), 12, 8)
    b.add(table("PRELOGIN encryption settings (since agent start)",
                "What the client asked for and what the server answered in PRELOGIN (OFF, ON, "
                "NOT_SUP, REQ …), per server.",
                [(f"sum by (server, client, server_setting) ({sel('tds_prelogin_encryption_total')})",
                  "Connections", None, None)],
                sort="Connections"), 24, 7)

    b.row("Server certificates")
    ci = "tds_server_certificate_info"
    na = "tds_server_certificate_not_after_seconds"
    cert_labels = "server, subject, issuer, signature_algorithm, key_bits"
    joined = (f"max by ({cert_labels}) ({sel(na)} * on (job, instance, server) group_left "
              f"(subject, issuer, signature_algorithm, key_bits) {sel(ci)})")
    b.add(table("Server certificates",
                "Each server's latest leaf certificate as seen on the wire (TLS 1.2 and below; TLS "
                "1.3 encrypts it): subject, issuer, signature algorithm, key size, expiry.",
                [
                    (f"{joined} * 1000", "Not after", "dateTimeAsIso", None),
                    (f"({joined} - time()) / 86400", "Days left", "d",
                     {"decimals": 1,
                      "custom.cellOptions": {"type": "color-background"},
                      "thresholds": thresholds(("red", None), ("orange", 14), ("green", 30))}),
                ],
                sort=None), 24, 8)
    b.add(stat("Soonest certificate expiry",
               "Time left until the first of the selected servers' certificates expires (negative: "
               "already expired).",
               f"min({sel(na)}) - time()", "dtdurations",
               thresholds(("red", None), ("orange", 14 * 86400), ("green", 30 * 86400))), 8, 6)
    b.add(stat("Certificates with a weak signature (MD5, SHA-1, SHA-224, SHA-512)",
               "Certificates signed with these hashes fail or weaken TLS 1.2 with SQL Server on some "
               "Windows builds (tds-primer §4): weak_certificate_signature failures.",
               f"count({sel(ci, RISKY)}) or 0 * count({sel(ci)})",
               "short", thresholds(("green", None), ("red", 1))), 8, 6)
    b.add(bargauge("Certificates by signature algorithm",
                   "Servers per certificate signature algorithm.",
                   f"count by (signature_algorithm) (max by (server, signature_algorithm) ({sel(ci)}))",
                   "{{signature_algorithm}}", "short"), 8, 6)

    return dashboard(
        "tdswatch-tls-migration",
        "tdswatch / TLS migration",
        "TLS inside SQL Server connections as tdswatch sees it: negotiated and offered versions, "
        "clients still below TLS 1.2, cipher suites and the DHE share and failure ratio, alerts, "
        "server certificates.",
        b,
        ["tdswatch", "sql-server", "tds", "tls"],
    )


DASHBOARDS = {
    "tdswatch-overview.json": overview,
    "tdswatch-tls-migration.json": tls_migration,
}


def render(build):
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv):
    if argv[1:] == ["--stdout"]:
        for name, build in sorted(DASHBOARDS.items()):
            sys.stdout.write(f"# {name}\n{render(build)}")
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    for name, build in sorted(DASHBOARDS.items()):
        path = os.path.join(HERE, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(render(build))
        print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
