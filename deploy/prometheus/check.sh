#!/usr/bin/env bash
# Checks tdswatch's Prometheus rules (deploy/prometheus/tdswatch.rules.yml), from anywhere:
#
#   deploy/prometheus/check.sh
#
# 1. promtool check rules --lint=all (--lint-fatal when this promtool has it)
# 2. promtool test rules (deploy/prometheus/tdswatch.rules.test.yml)
# 3. every alert has a firing and a not-firing case in the tests
# 4. the committed PrometheusRule (deploy/kubernetes/base/prometheusrule.yaml) is exactly what
#    generate-prometheusrule.py makes of the rules file (no drift)
# 5. every metric name, label name and label value matcher in the rules exists in the agent's
#    source (agent/src), so renaming a metric or a value breaks this check; and the checker itself
#    catches a misspelt metric and value
# 6. every alert has severity, summary, description and runbook_url, and its runbook exists and is
#    indexed in docs/runbooks/README.md
# 7. mutation tests: deliberate weakenings of the rules, applied to a temporary copy, each of
#    which must still be valid rules and must make `promtool test rules` fail
#
# As root on a bare Debian machine it installs what it needs (promtool from the Debian package
# `prometheus`, python3 with PyYAML). Nothing is ever skipped: a missing tool is a failure.
# Ends with the line `rules: N passed, M failed`; exits non-zero when anything failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
rules="$here/tdswatch.rules.yml"
tests="$here/tdswatch.rules.test.yml"
generator="$here/generate-prometheusrule.py"
generated="$repo/deploy/kubernetes/base/prometheusrule.yaml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

passed=0
failed=0

log() { printf '%s\n' "$*"; }

# check NAME COMMAND...: runs COMMAND, counts it, shows its output when it fails.
check() {
    local name="$1"
    shift
    if "$@" >"$work/out" 2>&1; then
        passed=$((passed + 1))
        log "ok   $name"
    else
        failed=$((failed + 1))
        log "FAIL $name"
        sed 's/^/     | /' "$work/out"
    fi
}

# --- tools ------------------------------------------------------------------------------------
apt_updated=0
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        log "check.sh: $* missing and not root: install it (Debian: apt-get install $*)" >&2
        return 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        # Another apt run may hold the lists lock for a while: wait for it.
        local try
        for try in $(seq 1 90); do
            if apt-get -o DPkg::Lock::Timeout=900 update -qq; then
                break
            fi
            [ "$try" -eq 90 ] && return 1
            sleep 10
        done
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y \
        --no-install-recommends "$@"
}

tools_ok=1
if ! command -v promtool >/dev/null 2>&1; then
    apt_install prometheus || tools_ok=0
fi
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import yaml' >/dev/null 2>&1; then
    apt_install python3 python3-yaml || tools_ok=0
fi
check "tools: promtool and python3 with PyYAML" \
    bash -c 'command -v promtool && python3 -c "import yaml"'
if [ "$tools_ok" -eq 0 ] || ! command -v promtool >/dev/null 2>&1; then
    log "rules: $passed passed, $((failed + 1)) failed"
    exit 1
fi
log "     | $(promtool --version 2>&1 | head -n 1)"

# --- 1, 2: promtool ---------------------------------------------------------------------------
lint=(--lint=all)
if promtool check rules --help 2>&1 | grep -q -- '--lint-fatal'; then
    lint+=(--lint-fatal)
fi
check "promtool check rules ${lint[*]}" promtool check rules "${lint[@]}" "$rules"
check "promtool test rules" promtool test rules "$tests"

# --- 3-6: structure, drift, source, runbooks ---------------------------------------------------
cat >"$work/lint.py" <<'PY'
"""Static checks of the rules file: python3 lint.py WHAT REPO RULES TESTS."""
import os
import re
import sys

import yaml

what, repo, rules_path, tests_path = sys.argv[1:5]
rules = yaml.safe_load(open(rules_path, encoding="utf-8"))
all_rules = [r for g in rules["groups"] for r in g["rules"]]
alerts = [r for r in all_rules if "alert" in r]
records = {r["record"] for r in all_rules if "record" in r}
errors = []

RUNBOOK_BASE = "https://github.com/tdswatch/tdswatch/blob/main/docs/runbooks/"
# Labels Prometheus adds itself (target labels), and series it makes itself.
TARGET_LABELS = {"job", "instance"}
BUILTIN_SERIES = {"up"}
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "Inf", "NaN",
    # aggregation operators
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile",
}


def source_text():
    parts = []
    for root, _, files in os.walk(os.path.join(repo, "agent", "src")):
        for f in sorted(files):
            if f.endswith(".rs"):
                parts.append(open(os.path.join(root, f), encoding="utf-8").read())
    return "\n".join(parts)


def promql_unescape(s):
    return re.sub(r"\\(.)", r"\1", s)


def regex_alternatives(value):
    """A regex matcher that is a plain alternation of literals -> the literals, else None."""
    out = []
    for alt in value.split("|"):
        lit = alt.replace("\\.", "\x00")
        if not re.fullmatch(r"[A-Za-z0-9_\-\x00:/ ]+", lit):
            return None
        out.append(lit.replace("\x00", "."))
    return out


def check_source():
    src = source_text()
    if not src:
        errors.append("no Rust source under agent/src")
        return
    for r in all_rules:
        name = r.get("alert") or r.get("record")
        expr = r["expr"]
        # Label matchers: {label op "value", ...}
        for body in re.findall(r"\{([^{}]*)\}", expr):
            for label, op, raw in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', body):
                value = promql_unescape(raw)
                if label not in TARGET_LABELS and not re.search(r"\b%s\b\s*(:|=)" % re.escape(label), src):
                    errors.append(f"{name}: label {label} is not a label of the agent's metrics")
                if op in ("=", "!="):
                    values = [value]
                else:
                    values = regex_alternatives(value)
                    if values is None:
                        errors.append(f"{name}: {label}{op}\"{raw}\" is not a plain alternation of values")
                        continue
                for v in values:
                    if f'"{v}"' not in src:
                        errors.append(f'{name}: {label}="{v}" does not occur in agent/src')
        # Metric names: identifiers outside strings, matchers, ranges, label lists and calls.
        e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
        e = re.sub(r"\{[^{}]*\}", " ", e)
        e = re.sub(r"\[[^\]]*\]", " ", e)
        e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", r"\1 ", e)
        for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", e):
            ident, call = m.group(1), m.group(2)
            if call or ident in KEYWORDS:
                continue
            if ident in records or ident in BUILTIN_SERIES:
                continue
            base = re.sub(r"_(total|bucket|sum|count)$", "", ident)
            if f'"{ident}"' in src or f'"{base}"' in src:
                continue
            errors.append(f"{name}: metric {ident} is not registered in agent/src")


def check_alerts():
    names = [a["alert"] for a in alerts]
    if len(set(names)) != len(names):
        errors.append("alert names are not unique")
    readme_path = os.path.join(repo, "docs", "runbooks", "README.md")
    readme = open(readme_path, encoding="utf-8").read() if os.path.exists(readme_path) else ""
    if not readme:
        errors.append("docs/runbooks/README.md is missing")
    for a in alerts:
        n = a["alert"]
        sev = a.get("labels", {}).get("severity")
        if sev not in ("critical", "warning", "info"):
            errors.append(f"{n}: severity is {sev!r}, not critical, warning or info")
        ann = a.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not str(ann.get(key, "")).strip():
                errors.append(f"{n}: annotation {key} missing")
        if "for" not in a:
            errors.append(f"{n}: no for:")
        if ann.get("runbook_url") != RUNBOOK_BASE + n + ".md":
            errors.append(f"{n}: runbook_url is not {RUNBOOK_BASE}{n}.md")
        rb = os.path.join(repo, "docs", "runbooks", n + ".md")
        if not os.path.exists(rb):
            errors.append(f"{n}: docs/runbooks/{n}.md is missing")
        elif not open(rb, encoding="utf-8").read().startswith(f"# {n}"):
            errors.append(f"{n}: docs/runbooks/{n}.md does not start with '# {n}'")
        if f"({n}.md)" not in readme:
            errors.append(f"{n}: not linked from docs/runbooks/README.md")
    for f in os.listdir(os.path.join(repo, "docs", "runbooks")):
        if f.endswith(".md") and f != "README.md" and f[:-3] not in names:
            errors.append(f"docs/runbooks/{f}: no alert of that name")


def check_cases():
    tests = yaml.safe_load(open(tests_path, encoding="utf-8"))
    firing, quiet = set(), set()
    for t in tests.get("tests", []):
        for c in t.get("alert_rule_test", []) or []:
            (firing if c.get("exp_alerts") else quiet).add(c["alertname"])
    for a in alerts:
        n = a["alert"]
        if n not in firing:
            errors.append(f"{n}: no test case where it fires")
        if n not in quiet:
            errors.append(f"{n}: no test case where it does not fire")


{"source": check_source, "alerts": check_alerts, "cases": check_cases}[what]()
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY

check "every alert has a firing and a not-firing test case" \
    python3 "$work/lint.py" cases "$repo" "$rules" "$tests"

drift() {
    python3 "$generator" -o - >"$work/prometheusrule.yaml" &&
        diff -u "$generated" "$work/prometheusrule.yaml" &&
        python3 - "$rules" "$generated" <<'PY'
import sys, yaml
src = yaml.safe_load(open(sys.argv[1]))
out = yaml.safe_load(open(sys.argv[2]))
assert out["apiVersion"] == "monitoring.coreos.com/v1", out["apiVersion"]
assert out["kind"] == "PrometheusRule", out["kind"]
assert out["metadata"]["name"] == "tdswatch", out["metadata"]
assert out["metadata"]["labels"]["app.kubernetes.io/name"] == "tdswatch", out["metadata"]
assert out["spec"]["groups"] == src["groups"], "spec.groups differ from the rules file"
PY
}
check "PrometheusRule is generated from the rules file (no drift)" drift

check "metric names, labels and label values exist in agent/src" \
    python3 "$work/lint.py" source "$repo" "$rules" "$tests"

# The source check must itself catch a renamed metric and a renamed value.
sed 's/tds_handshake_failures_total\[10m\]/tds_handshake_failure_total[10m]/' "$rules" >"$work/renamed-metric.yml"
sed 's/reason="no_common_cipher"/reason="no_common_ciphers"/' "$rules" >"$work/renamed-value.yml"
source_check_catches() {
    ! cmp -s "$rules" "$work/renamed-metric.yml" && ! cmp -s "$rules" "$work/renamed-value.yml" &&
        ! python3 "$work/lint.py" source "$repo" "$work/renamed-metric.yml" "$tests" &&
        ! python3 "$work/lint.py" source "$repo" "$work/renamed-value.yml" "$tests"
}
check "the source check catches a renamed metric and a renamed label value" source_check_catches

check "every alert has severity, summary, description, runbook_url and its runbook" \
    python3 "$work/lint.py" alerts "$repo" "$rules" "$tests"

# --- 7: mutations -----------------------------------------------------------------------------
# Each: a name, a regular expression (multi-line) that must match the rules file a known number of
# times (once unless said), and its replacement. The weakened copy must still pass `promtool check rules` and must fail
# `promtool test rules`.
cat >"$work/mutate.py" <<'PY'
import re
import sys

# (name, pattern, replacement[, matches]): `matches` (default 1) is how often the pattern must
# match, so that a mutation that no longer applies to the rules is noticed.
FIRST = r"(?:.*\n){7}"  # the two first-occurrence branches of an events-in-window expression
MUTATIONS = [
    ("ratio: traffic floor dropped",
     r"\n *and on \(job, server\)\n *job_server:tds_handshake_attempts:increase10m >= 20", ""),
    ("ratio: comparison flipped",
     r"job_server:tds_handshake_failures:ratio10m > 0\.2", "job_server:tds_handshake_failures:ratio10m < 0.2"),
    ("ratio: for: 5m -> 1m",
     r"(alert: TdsHandshakeFailureRatioHigh\n(?:.*\n)*?        for: )5m", r"\g<1>1m"),
    ("ratio: severity critical -> warning",
     r"(alert: TdsHandshakeFailureRatioHigh\n(?:.*\n)*?          severity: )critical", r"\g<1>warning"),
    ("ratio: every connection (probes, unknown outcomes) counted as an attempt",
     r'tds_connections_total\{outcome="established"\}', "tds_connections_total", 4),
    ("failures: first occurrence not counted",
     r"(sum by \(job, server, reason\) \(\n)" + FIRST, r"\1"),
    ("failures: first occurrence not tied to a scraped agent (scrape outages replay old failures)",
     r"(\(tds_handshake_failures_total unless tds_handshake_failures_total offset 10m\))\n *and on \(job, instance\) tdswatch_build_info offset 10m",
     r"\1"),
    ("failures: a new agent's first occurrences not counted",
     r"\n *or\n *\(tds_handshake_failures_total unless on \(job, instance\) last_over_time\(tdswatch_build_info\[1d\] offset 10m\)\)",
     ""),
    ("DHE: `unless` non-DHE failures dropped",
     r"\n *unless on \(job, server\)\n *sum by \(job, server\) \(job_server_kx_result:tds_tls_handshakes:increase1h\{kx!=\"dhe\", result=\"failed\"\}\) > 0", ""),
    ("DHE: small-ratio cap dropped",
     r"\) < 0\.5\n", ") < 1.1\n"),
    ("DHE: cap tightened to 0.25 (a quiet server's one failure missed)",
     r"\) < 0\.5\n", ") < 0.25\n"),
    ("DHE: first occurrence not counted",
     r"(sum by \(job, server, kx, result\) \(\n)" + FIRST, r"\1"),
    ("no common cipher: for: 5m -> 15m",
     r"(alert: TdsNoCommonCipherSuite\n(?:.*\n)*?        for: )5m", r"\g<1>15m"),
    ("no common TLS version: reason misspelt in the alert",
     r'reason="no_common_tls_version"', 'reason="no_common_version"'),
    ("certificate rejected: > 0 -> > 1",
     r'(reason="certificate_rejected"\}) > 0', r"\1 > 1"),
    ("encryption mismatch: strict_mismatch dropped",
     r"encryption_mismatch\|strict_mismatch", "encryption_mismatch"),
    ("legacy TLS: TLSv1.0 dropped from negotiated versions",
     r'\{version=~"SSLv3\|TLSv1\\\\\.0\|TLSv1\\\\\.1"\}', r'{version=~"SSLv3|TLSv1\\\\.1"}'),
    ("legacy clients: first occurrence not counted",
     r"(record: job_server_max_version:tds_tls_client_hellos:increase1h\n *expr: \|\n *sum by \(job, server, max_version\) \(\n)" + FIRST,
     r"\1"),
    ("certificate expiring: lower bound > 0 dropped",
     r" < 14 \* 86400 > 0", " < 14 * 86400"),
    ("certificate expiring: 14 days -> 7",
     r" < 14 \* 86400", " < 7 * 86400"),
    ("certificate expired: <= 0 -> < -86400",
     r"- time\(\) <= 0", "- time() < -86400"),
    ("weak signature: md5 dropped",
     r"md5WithRSAEncryption\|", ""),
    ("agent down: not tied to tdswatch targets",
     r"up == 0\n *and on \(job, instance\)\n *last_over_time\(tdswatch_build_info\[1d\]\)", "up == 0"),
    ("agent absent: absent(up)",
     r"absent\(tdswatch_build_info\)", "absent(up)"),
    ("kernel drops: for: 15m -> 30m",
     r"(alert: TdswatchKernelDroppingPackets\n(?:.*\n)*?        for: )15m", r"\g<1>30m"),
    ("interface drops: kernel counter instead",
     r"rate\(tdswatch_capture_interface_dropped_packets_total\[10m\]\)", "rate(tdswatch_capture_kernel_dropped_packets_total[10m])"),
    ("internal drops: > 0 -> > 1",
     r"(rate\(tdswatch_dropped_segments_total\[10m\]\)\)) > 0", r"\1 > 1"),
    ("evictions: > 0 -> > 1",
     r"(rate\(tdswatch_evicted_connections_total\[10m\]\)\)) > 0", r"\1 > 1"),
]

if sys.argv[1] == "count":
    print(len(MUTATIONS))
    sys.exit(0)
if sys.argv[1] == "name":
    print(MUTATIONS[int(sys.argv[2])][0])
    sys.exit(0)
# apply INDEX SRC DST
i, src, dst = int(sys.argv[2]), sys.argv[3], sys.argv[4]
name, pattern, repl = MUTATIONS[i][:3]
want = MUTATIONS[i][3] if len(MUTATIONS[i]) > 3 else 1
text = open(src, encoding="utf-8").read()
out, n = re.subn(pattern, repl, text)
if n != want:
    print(f"mutation {name!r} matched {n} times (must be {want}): update it with the rules")
    sys.exit(1)
open(dst, "w", encoding="utf-8").write(out)
PY

mkdir -p "$work/mutant"
cp "$tests" "$work/mutant/tdswatch.rules.test.yml"
mutant_killed() {
    local i="$1"
    python3 "$work/mutate.py" apply "$i" "$rules" "$work/mutant/tdswatch.rules.yml" || return 1
    if ! promtool check rules "$work/mutant/tdswatch.rules.yml"; then
        echo "the mutated rules are not valid rules: the mutation proves nothing"
        return 1
    fi
    if promtool test rules "$work/mutant/tdswatch.rules.test.yml"; then
        echo "SURVIVED: the tests pass with this weakening"
        return 1
    fi
    return 0
}
n_mutations="$(python3 "$work/mutate.py" count)"
for i in $(seq 0 $((n_mutations - 1))); do
    check "mutation killed: $(python3 "$work/mutate.py" name "$i")" mutant_killed "$i"
done

log "rules: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
