#!/usr/bin/env python3
"""Checks tdswatch's Grafana dashboards (standard library only).

  check.py lint
      Every dashboard: valid JSON, uid/title/schemaVersion/templating, the variables datasource,
      job, instance and server, every panel on the ${datasource} variable with a unit, unique
      ids, gridPos inside 24 columns without overlaps, every range selector $__rate_interval,
      every selector filtered on $job and $instance (and $server for the tds_* families), every
      metric name present in the agent's source (agent/src, tests left out), and each file equal
      to what generate.py writes (drift). Then a self-test: deliberately broken dashboards, built
      in memory, must each fail. Exit 1 on any problem.

  check.py queries PROMETHEUS_URL [--job JOB] [--wait SECONDS]
      Runs every panel query and every variable query against a real Prometheus ($job, $instance,
      $server -> a regex matching all, or JOB; $__rate_interval -> 1m, $__range -> 1h,
      $__interval -> 15s): panel queries through /api/v1/query (instant), label_values(...)
      through /api/v1/label/<name>/values with match[]. Each must parse and return a non-empty
      result (0 or NaN is data; an empty vector is not). Empty results are retried until
      --wait seconds (default 10) have passed, since rate() needs two scrapes of a series;
      errors are not. A self-test first checks that a query with a syntax error and one on a
      metric that does not exist both fail. Prints one line per query, then
      `dashboards: N passed, M failed`; exit 1 if any failed.
"""

import copy
import glob
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.dont_write_bytecode = True  # no __pycache__ beside the dashboards
sys.path.insert(0, HERE)
import generate  # noqa: E402  (beside this file)

DS = {"type": "prometheus", "uid": "${datasource}"}
UIDS = {
    "tdswatch-overview.json": "tdswatch-overview",
    "tdswatch-tls-migration.json": "tdswatch-tls-migration",
}
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge"}
# Series Prometheus itself adds to every scrape, allowed besides the agent's families.
PROMETHEUS_SERIES = {"up"}
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")
RANGE_FUNCTIONS = re.compile(r"\b(rate|irate|increase|delta|idelta|deriv|[a-z]+_over_time)\s*\(")

# ------------------------------------------------------------------------------------------
# The agent's metric names


def agent_metric_names(src=os.path.join(ROOT, "agent", "src")):
    """Every string literal in agent/src that is a whole tds_* or tdswatch_* name, unit tests left
    out (a test that still mentions a renamed family must not keep it alive)."""
    names = set()
    files = glob.glob(os.path.join(src, "**", "*.rs"), recursive=True)
    if not files:
        raise SystemExit(f"no Rust sources under {src}")
    for path in files:
        if os.path.basename(path) == "tests.rs":
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        cut = text.find("#[cfg(test)]")
        if cut >= 0:
            text = text[:cut]
        names.update(re.findall(r'"((?:tds|tdswatch)_[a-z0-9_]+)"', text))
    return names


def known_metric(name, known):
    if name in PROMETHEUS_SERIES:
        return True
    for s in SUFFIXES:
        if name.endswith(s) and name[: len(name) - len(s)] in known:
            return True
    return False


# ------------------------------------------------------------------------------------------
# PromQL, as far as the lint needs it

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}")
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and",
    "or", "unless", "le", "inf", "nan",
}


def strip_strings(expr):
    return STRING.sub('""', expr)


def metric_names(expr):
    """Names of the series an expression selects: NAME{…} selectors and bare tds_/tdswatch_ names."""
    names = {m.group(1) for m in SELECTOR.finditer(expr)}
    bare = strip_strings(expr)
    bare = re.sub(r"\{[^{}]*\}", "{}", bare)
    names.update(re.findall(r"\b((?:tds|tdswatch)_[a-zA-Z0-9_:]*)", bare))
    return names


def balanced(expr):
    depth = {"(": 0, "[": 0, "{": 0}
    pairs = {")": "(", "]": "[", "}": "{"}
    for c in strip_strings(expr):
        if c in depth:
            depth[c] += 1
        elif c in pairs:
            depth[pairs[c]] -= 1
            if depth[pairs[c]] < 0:
                return False
    return all(v == 0 for v in depth.values())


def expr_problems(expr, known):
    """Problems with one panel query."""
    out = []
    if not expr or not expr.strip():
        return ["empty query"]
    if not balanced(expr):
        out.append("unbalanced brackets")
    for window in re.findall(r"\[([^\]]*)\]", strip_strings(expr)):
        if window != "$__rate_interval":
            out.append(f"range [{window}] instead of [$__rate_interval]")
    for m in RANGE_FUNCTIONS.finditer(expr):
        # The function's argument must hold a [$__rate_interval] range.
        depth, i = 0, m.end() - 1
        while i < len(expr):
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            if depth == 0:
                break
            i += 1
        if "[$__rate_interval]" not in expr[m.end() : i]:
            out.append(f"{m.group(1)}() without [$__rate_interval]")
    for m in SELECTOR.finditer(expr):
        name, matchers = m.group(1), m.group(2)
        if name in KEYWORDS:
            continue
        if 'job=~"$job"' not in matchers:
            out.append(f'{name}: no job=~"$job" matcher')
        if 'instance=~"$instance"' not in matchers:
            out.append(f'{name}: no instance=~"$instance" matcher')
        if name.startswith("tds_") and 'server=~"$server"' not in matchers:
            out.append(f'{name}: no server=~"$server" matcher')
    selected = {m.group(1) for m in SELECTOR.finditer(expr)}
    for name in sorted(metric_names(expr)):
        if name not in selected and name not in KEYWORDS:
            out.append(f"{name}: selected without label matchers")
        if not known_metric(name, known):
            out.append(f"{name}: not a metric the agent exports (agent/src)")
    return out


# ------------------------------------------------------------------------------------------
# lint


def all_panels(dash):
    for p in dash.get("panels", []):
        yield p
        for q in p.get("panels", []) or []:
            yield q


def lint_dashboard(dash, uid, known):
    """Problems with one dashboard (a parsed JSON object)."""
    errs = []
    if not isinstance(dash, dict):
        return ["not a JSON object"]
    if dash.get("uid") != uid:
        errs.append(f"uid {dash.get('uid')!r}, expected {uid!r}")
    if not dash.get("title"):
        errs.append("no title")
    if dash.get("schemaVersion") != 39:
        errs.append(f"schemaVersion {dash.get('schemaVersion')!r}, expected 39")
    if "__inputs" in dash or "${DS_" in json.dumps(dash):
        errs.append("__inputs / ${DS_…} placeholders: the data source must be the variable")
    if dash.get("id") is not None:
        errs.append("id must be null (import-ready)")

    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list", []) or []}
    if not variables:
        errs.append("no templating variables")
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errs.append("variable datasource: missing or not a prometheus data source variable")
    for name, metric, multi in (
        ("job", "tdswatch_build_info", False),
        ("instance", "tdswatch_build_info", True),
        ("server", "tds_connections_total", True),
    ):
        v = variables.get(name)
        if not v:
            errs.append(f"variable {name}: missing")
            continue
        query = v.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if v.get("type") != "query" or v.get("datasource") != DS:
            errs.append(f"variable {name}: not a query variable on ${{datasource}}")
        if not isinstance(query, str) or not query.startswith(f"label_values({metric}"):
            errs.append(f"variable {name}: query {query!r} is not label_values({metric}…)")
        elif not query.rstrip().endswith(f", {name})"):
            errs.append(f"variable {name}: query {query!r} does not list {name}")
        else:
            for n in metric_names(query):
                if not known_metric(n, known):
                    errs.append(f"variable {name}: {n} is not a metric the agent exports")
        if multi and not (v.get("multi") and v.get("includeAll")):
            errs.append(f"variable {name}: must be multi-value with All")

    ids = set()
    cells = {}
    panels = list(all_panels(dash))
    if not panels:
        errs.append("no panels")
    for p in panels:
        title = p.get("title") or f"panel {p.get('id')}"
        pid = p.get("id")
        if not isinstance(pid, int):
            errs.append(f"{title}: id {pid!r} is not an integer")
        elif pid in ids:
            errs.append(f"{title}: duplicate id {pid}")
        ids.add(pid)
        g = p.get("gridPos") or {}
        try:
            x, y, w, h = (int(g[k]) for k in ("x", "y", "w", "h"))
            if x < 0 or y < 0 or w < 1 or h < 1 or x + w > 24:
                errs.append(f"{title}: gridPos {g} outside 24 columns")
            else:
                for cx in range(x, x + w):
                    for cy in range(y, y + h):
                        if (cx, cy) in cells:
                            errs.append(f"{title}: overlaps {cells[(cx, cy)]}")
                            break
                        cells[(cx, cy)] = title
                    else:
                        continue
                    break
        except (KeyError, TypeError, ValueError):
            errs.append(f"{title}: gridPos {g!r} incomplete")
        if p.get("type") == "row":
            continue
        if p.get("type") not in PANEL_TYPES:
            errs.append(f"{title}: type {p.get('type')!r} not one of {sorted(PANEL_TYPES)}")
        if p.get("datasource") != DS:
            errs.append(f"{title}: datasource {p.get('datasource')!r}, expected {DS}")
        unit = (((p.get("fieldConfig") or {}).get("defaults")) or {}).get("unit")
        if not isinstance(unit, str) or not unit:
            errs.append(f"{title}: no fieldConfig.defaults.unit")
        targets = p.get("targets") or []
        if not targets:
            errs.append(f"{title}: no targets")
        refids = set()
        for t in targets:
            ref = t.get("refId")
            if not ref or ref in refids:
                errs.append(f"{title}: missing or duplicate refId {ref!r}")
            refids.add(ref)
            if t.get("datasource") != DS:
                errs.append(f"{title} [{ref}]: datasource {t.get('datasource')!r}, expected {DS}")
            for e in expr_problems(t.get("expr", ""), known):
                errs.append(f"{title} [{ref}]: {e}")
    return errs


def lint_file(path, known):
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        dash = json.loads(text)
    except (OSError, ValueError) as e:
        return [f"cannot read or parse: {e}"]
    errs = lint_dashboard(dash, UIDS[name], known)
    build = generate.DASHBOARDS.get(name)
    if build is None:
        errs.append("not produced by generate.py")
    elif generate.render(build) != text:
        errs.append("differs from what generate.py writes: run python3 dashboards/generate.py")
    return errs


def self_test_lint(known):
    """Each deliberately broken copy of the overview must fail the lint with the expected problem."""
    good = generate.overview()
    if lint_dashboard(good, "tdswatch-overview", known):
        print("self-test: skipped: the generated overview itself fails the lint (see above)")
        return 0

    def first_query_panel(d):
        return next(p for p in d["panels"] if p.get("type") != "row")

    def target0(d):
        return first_query_panel(d)["targets"][0]

    cases = [
        ("panel without the datasource variable",
         lambda d: first_query_panel(d).update(datasource={"type": "prometheus", "uid": "prom-1"}),
         "datasource"),
        ("panel without a unit",
         lambda d: first_query_panel(d)["fieldConfig"]["defaults"].pop("unit"), "unit"),
        ("duplicate panel id",
         lambda d: d["panels"][2].update(id=d["panels"][1]["id"]), "duplicate id"),
        ("gridPos beyond 24 columns",
         lambda d: first_query_panel(d)["gridPos"].update(x=20, w=8), "24 columns"),
        ("rate over a fixed 5m window",
         lambda d: target0(d).update(expr=target0(d)["expr"].replace("$__rate_interval", "5m")),
         "[$__rate_interval]"),
        ("renamed metric",
         lambda d: target0(d).update(
             expr=target0(d)["expr"].replace("tds_connections_total", "tds_connects_total")),
         "not a metric the agent exports"),
        ("query without the server filter",
         lambda d: target0(d).update(expr=target0(d)["expr"].replace(',server=~"$server"', "")),
         "server"),
        ("missing variable",
         lambda d: d["templating"].update(
             list=[v for v in d["templating"]["list"] if v["name"] != "instance"]),
         "variable instance"),
        ("__inputs placeholder",
         lambda d: d.update(__inputs=[{"name": "DS_PROMETHEUS"}]), "__inputs"),
        ("no schemaVersion", lambda d: d.pop("schemaVersion"), "schemaVersion"),
    ]
    bad = 0
    for what, breakit, expect in cases:
        d = copy.deepcopy(good)
        breakit(d)
        errs = lint_dashboard(d, "tdswatch-overview", known)
        if any(expect in e for e in errs):
            print(f"self-test: {what}: fails as expected ({next(e for e in errs if expect in e)})")
        else:
            bad += 1
            print(f"self-test: {what}: NOT caught (got {errs})")
    return bad


def cmd_lint():
    known = agent_metric_names()
    bad = 0
    for name in sorted(UIDS):
        path = os.path.join(HERE, name)
        errs = lint_file(path, known)
        for e in errs:
            print(f"{name}: {e}")
        if errs:
            bad += 1
        else:
            d = json.load(open(path, encoding="utf-8"))
            n = sum(1 for p in all_panels(d) if p.get("type") != "row")
            q = sum(len(p.get("targets", [])) for p in all_panels(d))
            print(f"{name}: ok ({n} panels, {q} queries)")
    st = self_test_lint(known)
    print(f"lint: {len(UIDS) - bad} passed, {bad} failed; self-test: {'ok' if not st else f'{st} not caught'}")
    return 1 if bad or st else 0


# ------------------------------------------------------------------------------------------
# queries


def substitute(expr, job):
    # A regex for exactly JOB, written as a PromQL string (backslashes doubled).
    job_re = re.escape(job).replace("\\", "\\\\").replace('"', '\\"') if job else ".*"
    values = {
        "job": job_re,
        "instance": ".*",
        "server": ".*",
        "__rate_interval": "1m",
        "__range": "1h",
        "__interval": "15s",
    }
    for k in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + k + "}", values[k]).replace("$" + k, values[k])
    return expr


def http_json(url, timeout=10.0):
    """(ok, json or error text)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return True, json.loads(r.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace")
        try:
            return False, f"HTTP {e.code}: {json.loads(body).get('error', body)}"
        except ValueError:
            return False, f"HTTP {e.code}: {body[:200]}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return False, str(e)


def run_query(prom, expr):
    """(status, detail): status 'ok', 'empty' (retry may help) or 'error'."""
    ok, doc = http_json(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if not ok:
        return "error", doc
    if doc.get("status") != "success":
        return "error", str(doc.get("error", doc))
    data = doc.get("data", {})
    result = data.get("result")
    if data.get("resultType") in ("scalar", "string"):
        return "ok", f"{data['resultType']} {result[1]}"
    if not result:
        return "empty", "empty result"
    shown = []
    for r in result[:2]:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(r.get("metric", {}).items()))
        shown.append(f"{{{labels}}} {r.get('value', [0, '?'])[1]}")
    more = " …" if len(result) > 2 else ""
    return "ok", f"{len(result)} series: {'; '.join(shown)}{more}"


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*)\s*,\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")


def run_label_values(prom, query):
    m = LABEL_VALUES.match(query)
    if not m:
        return "error", f"not a label_values(...) query: {query!r}"
    selector, label = m.group(1), m.group(2)
    params = [("match[]", selector)] if selector else []
    url = prom + f"/api/v1/label/{label}/values"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    ok, doc = http_json(url)
    if not ok:
        return "error", doc
    if doc.get("status") != "success":
        return "error", str(doc.get("error", doc))
    values = doc.get("data") or []
    if not values:
        return "empty", "no values"
    return "ok", f"{len(values)} values: {', '.join(values[:5])}{' …' if len(values) > 5 else ''}"


def collect_queries():
    """[(dashboard, what, kind, query)] for every panel target and every query variable."""
    out = []
    for name in sorted(UIDS):
        with open(os.path.join(HERE, name), encoding="utf-8") as f:
            dash = json.load(f)
        short = dash.get("title", name)
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") != "query":
                continue
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            out.append((short, f"variable {v['name']}", "label_values", q))
        for p in all_panels(dash):
            for t in p.get("targets", []) or []:
                out.append((short, f"{p.get('title')} [{t.get('refId')}]", "query", t.get("expr", "")))
    return out


def self_test_queries(prom):
    """A syntax error must be rejected by Prometheus, a family that does not exist must come back
    empty; both must count as failures."""
    cases = [
        ("syntax error", 'sum(rate(tds_connections_total{job=~".*"}[1m])', "error"),
        ("metric that does not exist", 'sum(rate(tds_no_such_family_total{job=~".*"}[1m]))', "empty"),
    ]
    bad = 0
    for what, q, expect in cases:
        status, detail = run_query(prom, q)
        if status != expect:
            bad += 1
            print(f"self-test: {what}: NOT caught as {expect} ({status}: {detail})")
        else:
            print(f"self-test: {what}: fails as expected ({detail})")
    return bad


def cmd_queries(argv):
    args = list(argv)
    job, wait = None, 10.0
    prom = None
    while args:
        a = args.pop(0)
        if a == "--job" and args:
            job = args.pop(0)
        elif a == "--wait" and args:
            wait = float(args.pop(0))
        elif prom is None and not a.startswith("--"):
            prom = a.rstrip("/")
        else:
            print(__doc__, file=sys.stderr)
            return 2
    if not prom:
        print(__doc__, file=sys.stderr)
        return 2

    queries = collect_queries()
    status, detail = run_query(prom, "vector(1)")
    if status != "ok":
        print(f"prometheus {prom}: FAIL ({detail})")
        print(f"dashboards: 0 passed, {len(queries)} failed")
        return 1
    st = self_test_queries(prom)
    results = {}
    start = time.monotonic()
    deadline = start + wait
    pending = list(range(len(queries)))
    first = True
    while True:
        retry = []
        for i in pending:
            dash, what, kind, q = queries[i]
            s = substitute(q, job)
            status, detail = (run_label_values if kind == "label_values" else run_query)(prom, s)
            if status == "ok" and not first:
                detail += f"; after {time.monotonic() - start:.1f} s of retries"
            results[i] = (status, detail)
            if status == "empty":
                retry.append(i)
        if not retry or time.monotonic() >= deadline:
            break
        pending = retry
        first = False
        time.sleep(1.0)

    passed = failed = 0
    for i, (dash, what, kind, q) in enumerate(queries):
        status, detail = results[i]
        if status == "ok":
            passed += 1
            print(f"{dash} / {what}: ok ({detail})")
        else:
            failed += 1
            print(f"{dash} / {what}: FAIL ({detail}): {substitute(q, job)}")
    if st:
        print(f"self-test: {st} broken queries were not caught")
    print(f"dashboards: {passed} passed, {failed} failed")
    return 1 if failed or st else 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "lint" and len(argv) == 2:
        return cmd_lint()
    if len(argv) >= 3 and argv[1] == "queries":
        return cmd_queries(argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
