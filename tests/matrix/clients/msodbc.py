"""Microsoft ODBC Driver 18 (PyPI mssql-python, which carries the driver and uses the system
OpenSSL 3) against the responder, for the client matrix.

Settings from the environment that tests/matrix/run.sh sets:
  MX_PORT   responder port on 127.0.0.1
  MX_ENC    full | login_only | strict   (login_only: Encrypt=no, which sends OFF)
  MX_CA     optional: strict pins this certificate (ServerCertificate); for full, when set, the
            certificate is validated (TrustServerCertificate=no) instead of trusted
  OPENSSL_CONF (optional) forces TLS versions and suites: the driver honours it.
Prints `ok` or `error: <exception class>`; never the user, password or SQL text.
"""

import os
import sys

import mssql_python

enc = os.environ["MX_ENC"]
parts = [f"Server=127.0.0.1,{os.environ['MX_PORT']}", "UID=matrix", "PWD=not-a-secret"]
ca = os.environ.get("MX_CA")
if enc == "strict":
    parts += ["Encrypt=strict", f"ServerCertificate={ca}"]
elif enc == "login_only":
    parts += ["Encrypt=no", "TrustServerCertificate=yes"]
else:
    parts += ["Encrypt=yes", "TrustServerCertificate=" + ("no" if ca else "yes")]
try:
    conn = mssql_python.connect(";".join(parts), timeout=8)
    cur = conn.cursor()
    cur.execute("SELECT 1")
    row = cur.fetchone()
    conn.close()
    print("ok" if row and row[0] == 1 else "error: unexpected row")
except Exception as e:  # the driver raises its own DB-API classes; print only the class name
    print(f"error: {type(e).__name__}")
    sys.exit(1)
