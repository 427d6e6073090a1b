"""One python-tds (pytds) login against the responder, for tests/e2e/prometheus.sh.

Usage: pytds_client.py HOST PORT MODE WORKDIR EXPECT
MODE: none (PRELOGIN ENCRYPT_NOT_SUP, no TLS), login_only (TLS for LOGIN7 only), full (TLS
throughout, the test CA), wrong_ca (TLS, an unrelated CA: the client must reject the certificate).
EXPECT: ok (the login succeeds and SELECT 1 returns 1) or fail (the connection fails).
Exits 0 when what happened is what was expected. Never prints the credentials.
"""

import os
import sys

import pytds


def main() -> int:
    host, port, mode, work, expect = sys.argv[1:6]
    kwargs = {}
    if mode in ("login_only", "full"):
        kwargs["cafile"] = os.path.join(work, "ca.pem")
    elif mode == "wrong_ca":
        kwargs["cafile"] = os.path.join(work, "other-ca.pem")
    elif mode != "none":
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    if mode == "login_only":
        kwargs["enc_login_only"] = True
    try:
        with pytds.connect(
            server=host,
            port=int(port),
            user="e2e_user",
            password="e2e-not-a-secret",
            login_timeout=10,
            timeout=10,
            validate_host=False,
            disable_connect_retry=True,
            autocommit=True,
            **kwargs,
        ) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                row = cur.fetchone()
        got = "ok" if row is not None and row[0] == 1 else f"unexpected row {row!r}"
    except Exception as e:  # the failure is the expected outcome in some modes
        got = "fail"
        print(f"{mode}: {type(e).__name__}", file=sys.stderr)
    print(f"{mode}: {got}")
    return 0 if got == expect else 1


if __name__ == "__main__":
    sys.exit(main())
