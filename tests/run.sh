#!/usr/bin/env bash
# Sets up everything the tests need on a bare machine, then runs every test.
# Usage: tests/run.sh            (from the project root)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

shared=../shared/captures/public
if [ ! -d "$shared" ]; then
    echo "tests/run.sh: $shared is missing: the conformance tests read the public captures from ../shared" >&2
    exit 1
fi

# System packages: a C toolchain and the TLS stack for the test tools (tdsgen's and the
# responder's real OpenSSL handshakes), libpcap and iproute2 for live capture and its
# network-namespace tests, prometheus for promtool, and FreeTDS tsql and tcpdump for the
# responder's real-client test. Installed only when missing.
need=()
for pkg in build-essential pkg-config libssl-dev libpcap-dev iproute2 prometheus freetds-bin tcpdump openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# PyYAML for the rule checks (deploy/prometheus, the e2e's rule check); usually there already.
if ! python3 -c 'import yaml' 2>/dev/null; then
    log "installing PyYAML"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    fi
    pip=(python3 -m pip install -q --disable-pip-version-check PyYAML)
    # A Debian system Python refuses plain pip installs (PEP 668).
    "${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages
fi

# The real clients (FreeTDS tsql, python-tds, pymssql, mssql-python / msodbc18, tedious, jTDS)
# for the end-to-end test and the client matrix.
log "clients: tests/clients/install.sh"
tests/clients/install.sh

log "rustfmt"
cargo fmt --all -- --check

log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
cargo test --workspace --locked 2>&1 | tee /tmp/tdswatch-test.log

log "alert rules: promtool check (lint) and unit tests, PrometheusRule drift, mutations"
deploy/prometheus/check.sh

log "dashboards: lint (schema fields, variables, units, metric names, drift)"
python3 dashboards/check.py lint

log "deployment: systemd unit, kustomize base, Dockerfile, the agent under the unit's capabilities"
deploy/check.sh

log "end-to-end: live agent, real clients, real Prometheus (with the alert rules and every dashboard query)"
tests/e2e/prometheus.sh

log "client matrix: today's real clients into a fresh directory, checked against expected.tsv"
matrix_dir=$(mktemp -d /tmp/tdswatch-matrix-run.XXXXXX)
trap 'rm -rf "$matrix_dir"' EXIT
TDSWATCH_CORPUS_DIR=$matrix_dir tests/matrix/run.sh
TDSWATCH_CORPUS_DIR=$matrix_dir cargo test -q --locked -p tdswatch --test corpus -- --nocapture \
    2>&1 | tee /tmp/tdswatch-matrix.log
grep -E '^matrix: [0-9]+ passed, 0 failed$' /tmp/tdswatch-matrix.log

log "intermittent DHE: 2 000 handshakes against dhe_reset_fraction"
tests/matrix/dhe-intermittent.sh
