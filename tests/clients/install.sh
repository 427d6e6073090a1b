#!/usr/bin/env bash
# Installs the real SQL Server clients that the client matrix (tests/matrix/run.sh) and the
# end-to-end test (tests/e2e/prometheus.sh) drive, on a bare Debian 12, as root (or with sudo).
# Idempotent and quiet: it installs only what is missing and prints one line per install step.
#
#   apt   freetds-bin (tsql), tcpdump, openssl, python3-venv, nodejs + npm, libjtds-java and a
#         JDK (jTDS, matrix only)
#   pip   pymssql, python-tds, pyOpenSSL, mssql-python (Microsoft ODBC Driver 18) into
#         tests/matrix/.venv   (use tests/matrix/.venv/bin/python to run them)
#   npm   tedious@19 into tests/matrix/node_modules
#
# Both locations are gitignored (tests/matrix/.gitignore). The tiberius client is a workspace
# crate (tools/tiberius-client) that the tests build with cargo.
# Usage: tests/clients/install.sh     (from anywhere)
set -euo pipefail
cd "$(dirname "$0")/../.."
matrix=$PWD/tests/matrix
log() { printf '== %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
for pkg in freetds-bin tcpdump openssl python3-venv nodejs npm libjtds-java default-jdk-headless; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
# python3/node/java may come from elsewhere (pyenv, a Node build): only ask apt for what is missing.
if command -v node >/dev/null && command -v npm >/dev/null; then
    need=("${need[@]/nodejs}") && need=("${need[@]/npm}")
fi
command -v javac >/dev/null && need=("${need[@]/default-jdk-headless}")
python3 -c 'import venv, ensurepip' 2>/dev/null && need=("${need[@]/python3-venv}")
mapfile -t need < <(printf '%s\n' "${need[@]}" | grep -v '^$' || true)
if [ ${#need[@]} -gt 0 ]; then
    log "apt: ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null
fi

venv=$matrix/.venv
if ! "$venv/bin/python" -c 'import pymssql, pytds, OpenSSL, mssql_python' 2>/dev/null; then
    log "pip: pymssql python-tds pyOpenSSL mssql-python into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'pymssql==2.*' 'python-tds==1.17.*' \
        pyOpenSSL 'mssql-python==1.*'
fi

if [ ! -f "$matrix/node_modules/tedious/package.json" ]; then
    log "npm: tedious@19 into $matrix/node_modules"
    npm install --silent --no-audit --no-fund --prefix "$matrix" 'tedious@19' >/dev/null
fi

for tool in tsql tcpdump openssl node java timeout; do
    command -v "$tool" >/dev/null || { echo "install.sh: $tool is missing after the install" >&2; exit 1; }
done
