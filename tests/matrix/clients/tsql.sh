#!/usr/bin/env bash
# FreeTDS tsql (Debian freetds-bin, GnuTLS) against the responder, for the client matrix.
# tests/matrix/run.sh writes the freetds.conf (FREETDSCONF) and, to force versions or key
# exchanges, a GnuTLS priority override (GNUTLS_SYSTEM_PRIORITY_FILE); MX_SECTION names the
# server section. MX_IDLE_SECONDS keeps the session open, idle, that long after the SELECT 1
# (for the server's idle close). Prints `ok` when the SELECT 1 row came back, `error` otherwise.
set -uo pipefail
out=$({ printf 'SELECT 1\ngo\n'; sleep "${MX_IDLE_SECONDS:-0}"; printf 'exit\n'; } | tsql -S "$MX_SECTION" -U matrix -P not-a-secret 2>&1)
if grep -q '(1 row affected)' <<<"$out"; then echo ok; else echo error; exit 1; fi
