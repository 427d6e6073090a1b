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
for pkg in build-essential pkg-config libssl-dev libpcap-dev iproute2 prometheus freetds-bin tcpdump; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

log "rustfmt"
cargo fmt --all -- --check

log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
cargo test --workspace --locked 2>&1 | tee /tmp/tdswatch-test.log
