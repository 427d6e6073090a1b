// One tedious 19 (Node's OpenSSL) login against the responder, for tests/e2e/prometheus.sh.
//
// Usage: node tedious_client.js HOST PORT MODE EXPECT [CA_FILE]
// MODE:
//   none    encrypt false: PRELOGIN ENCRYPT_NOT_SUP, no TLS (tedious has no login-only mode)
//   full    encrypt true: ENCRYPT_ON, TLS 1.2 throughout (tedious's only version in TDS 7.x)
//   strict  encrypt 'strict': TDS 8.0, TLS first (1.2-1.3) with ALPN tds/8.0
//   tls10   full, limited to TLS 1.0 (cryptoCredentialsDetails; TLS 1.0 needs SECLEVEL=0)
//   ecdhe   full, offering only ECDHE-RSA-AES256-GCM-SHA384 (no DHE suite)
// EXPECT: ok (the login succeeds and SELECT 1 returns 1) or fail.
// CA_FILE: the certificate is validated against it, for the name sql.e2e.test (in the test
// certificate's SAN); without it, trustServerCertificate is on.
// Prints `MODE: ok` or `MODE: fail (<error code>)` and exits 0 when that is what was expected.
// Never prints the user, the password, the SQL text or the server's messages.
'use strict';
const fs = require('fs');
const path = require('path');
const { Connection, Request } = require(
  path.join(__dirname, '..', 'matrix', 'node_modules', 'tedious'));

const [host, port, mode, expect, ca] = process.argv.slice(2);
const modes = ['none', 'full', 'strict', 'tls10', 'ecdhe'];
if (!host || !port || !modes.includes(mode) || !['ok', 'fail'].includes(expect)) {
  console.error('usage: tedious_client.js HOST PORT none|full|strict|tls10|ecdhe ok|fail [CA_FILE]');
  process.exit(2);
}

const crypto = {};
if (mode === 'tls10') {
  Object.assign(crypto, { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' });
}
if (mode === 'ecdhe') crypto.ciphers = 'ECDHE-RSA-AES256-GCM-SHA384';
if (ca) crypto.ca = fs.readFileSync(ca);

const conn = new Connection({
  server: host,
  authentication: { type: 'default', options: { userName: 'e2e_user', password: 'e2e-not-a-secret' } },
  options: {
    port: Number(port),
    encrypt: mode === 'strict' ? 'strict' : mode !== 'none',
    trustServerCertificate: !ca,
    serverName: ca ? 'sql.e2e.test' : undefined,
    cryptoCredentialsDetails: crypto,
    connectTimeout: 10000,
    requestTimeout: 10000,
    maxRetriesOnTransientErrors: 0,
    connectionRetryInterval: 500,
  },
});

let done = false;
function finish(got) {
  if (done) return;
  done = true;
  console.log(`${mode}: ${got}`);
  conn.close();
  const matched = expect === 'ok' ? got === 'ok' : got.startsWith('fail');
  process.exitCode = matched ? 0 : 1;
}
const fail = (e) => finish(`fail (${e.code || e.name})`);
conn.on('error', fail);
conn.on('connect', (err) => {
  if (err) return fail(err);
  let value = null;
  const req = new Request('SELECT 1', (e) => {
    if (e) return fail(e);
    finish(value === 1 ? 'ok' : 'unexpected row');
  });
  req.on('row', (cols) => { value = cols[0].value; });
  conn.execSqlBatch(req);
});
conn.connect();
