"""python-tds (pytds 1.17, pyOpenSSL) against the responder, for the client matrix.

Settings come from the environment that tests/matrix/run.sh sets:
  MX_PORT      responder port on 127.0.0.1
  MX_ENC       full | login_only | none   (none: no cafile, so pytds sends ENCRYPT_NOT_SUP)
  MX_CA        trusted CA file (the responder's certificate, or an unrelated one to be rejected)
  MX_CIPHERS   optional OpenSSL cipher list for the client (pytds has no option: the context
               factory is wrapped, as real-clients.md says)
Prints one line, `ok` or `error: <exception class>`; never the user, password or SQL text.
"""

import os
import sys

import OpenSSL.SSL
import pytds
import pytds.tls

ciphers = os.environ.get("MX_CIPHERS")
if ciphers:
    _orig = pytds.tls.create_context

    def _ctx(cafile):
        ctx = _orig(cafile)
        ctx.set_cipher_list(ciphers.encode())
        return ctx

    pytds.tls.create_context = _ctx

enc = os.environ["MX_ENC"]
kw = {}
if enc in ("full", "login_only"):
    kw["cafile"] = os.environ["MX_CA"]
    kw["validate_host"] = False
    kw["enc_login_only"] = enc == "login_only"
try:
    with pytds.connect(
        server="127.0.0.1",
        port=int(os.environ["MX_PORT"]),
        user="matrix",
        password="not-a-secret",
        login_timeout=8,
        timeout=8,
        disable_connect_retry=True,
        autocommit=True,
        **kw,
    ) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            row = cur.fetchone()
    print("ok" if row and row[0] == 1 else "error: unexpected row")
except (pytds.Error, OpenSSL.SSL.Error, OSError) as e:
    print(f"error: {type(e).__name__}")
    sys.exit(1)
