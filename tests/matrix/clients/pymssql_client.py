"""pymssql 2.4 (bundled FreeTDS 1.5 + OpenSSL 1.1.1) against the responder, for the client matrix.

pymssql takes its TLS settings from a freetds.conf section: tests/matrix/run.sh writes that file,
points FREETDSCONF at it and passes the section name in MX_SECTION. OPENSSL_CONF, when set, is
honoured by the bundled OpenSSL. Prints `ok` or `error: <exception class>`; never the user,
password or SQL text.
"""

import os
import sys

import pymssql

try:
    conn = pymssql.connect(
        server=os.environ["MX_SECTION"],
        # pymssql passes its own default port (1433) over the section's: give it explicitly.
        port=os.environ["MX_PORT"],
        user="matrix",
        password="not-a-secret",
        login_timeout=8,
        timeout=8,
    )
    cur = conn.cursor()
    cur.execute("SELECT 1")
    row = cur.fetchone()
    conn.close()
    print("ok" if row and row[0] == 1 else "error: unexpected row")
except (pymssql.Error, OSError) as e:
    print(f"error: {type(e).__name__}")
    sys.exit(1)
