"""One Microsoft ODBC Driver 18 login (PyPI mssql-python, which carries the driver and uses the
system OpenSSL 3) against the responder, for tests/e2e/prometheus.sh.

Usage: msodbc_client.py HOST PORT MODE EXPECT [CERT_FILE]
MODE:
  login_only  Encrypt=no: PRELOGIN ENCRYPT_OFF; TLS for LOGIN7 only, or none against NOT_SUP
  full        Encrypt=yes, TrustServerCertificate=yes: ENCRYPT_ON, TLS throughout
  validate    Encrypt=yes, TrustServerCertificate=no: the certificate must chain to the system
              CA store, which does not hold the test CA, so the client rejects it
  strict      Encrypt=strict (TDS 8.0, TLS first) with ServerCertificate=CERT_FILE (pinned)
EXPECT: ok (the login succeeds and SELECT 1 returns 1) or fail.
TLS versions and suites are forced from outside with OPENSSL_CONF, which the driver honours.
Prints `MODE: ok` or `MODE: fail (<exception class>)` and exits 0 when that is what was
expected. Never prints the user, the password, the SQL text or the driver's messages.
"""

import sys

MODES = ("login_only", "full", "validate", "strict")


def main() -> int:
    if len(sys.argv) not in (5, 6) or sys.argv[3] not in MODES or sys.argv[4] not in ("ok", "fail"):
        print(__doc__, file=sys.stderr)
        return 2
    host, port, mode, expect = sys.argv[1:5]
    cert = sys.argv[5] if len(sys.argv) == 6 else None
    parts = [f"Server={host},{port}", "UID=e2e_user", "PWD=e2e-not-a-secret"]
    if mode == "login_only":
        parts += ["Encrypt=no", "TrustServerCertificate=yes"]
    elif mode == "full":
        parts += ["Encrypt=yes", "TrustServerCertificate=yes"]
    elif mode == "validate":
        parts += ["Encrypt=yes", "TrustServerCertificate=no"]
    else:
        if not cert:
            print("strict needs CERT_FILE", file=sys.stderr)
            return 2
        parts += ["Encrypt=strict", f"ServerCertificate={cert}"]

    import mssql_python  # after the argument checks: loading the driver takes a moment

    try:
        conn = mssql_python.connect(";".join(parts), timeout=10)
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            row = cur.fetchone()
        finally:
            conn.close()
        got = "ok" if row and row[0] == 1 else "unexpected row"
    except Exception as e:  # the driver's DB-API classes; only the class name is printed
        got = f"fail ({type(e).__name__})"
    print(f"{mode}: {got}")
    matched = got == "ok" if expect == "ok" else got.startswith("fail")
    return 0 if matched else 1


if __name__ == "__main__":
    sys.exit(main())
