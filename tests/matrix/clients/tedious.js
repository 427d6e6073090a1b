// tedious 19 against the responder, for the client matrix.
// Settings from the environment that tests/matrix/run.sh sets:
//   MX_PORT     responder port on 127.0.0.1
//   MX_ENC      full | strict | none   (none: encrypt false)
//   MX_CA       optional CA file: when set the certificate is validated against it, otherwise
//               trustServerCertificate is on
//   MX_TLS_MIN, MX_TLS_MAX, MX_CIPHERS   optional cryptoCredentialsDetails
// Prints `ok` or `error: <code>`; never the user, password or SQL text.
'use strict';
const fs = require('fs');
const path = require('path');
const { Connection, Request } = require(path.join(__dirname, '..', 'node_modules', 'tedious'));

const env = process.env;
const crypto = {};
if (env.MX_TLS_MIN) crypto.minVersion = env.MX_TLS_MIN;
if (env.MX_TLS_MAX) crypto.maxVersion = env.MX_TLS_MAX;
if (env.MX_CIPHERS) crypto.ciphers = env.MX_CIPHERS;
if (env.MX_CA) crypto.ca = fs.readFileSync(env.MX_CA);
const encrypt = env.MX_ENC === 'strict' ? 'strict' : env.MX_ENC === 'full';

const conn = new Connection({
  server: '127.0.0.1',
  authentication: { type: 'default', options: { userName: 'matrix', password: 'not-a-secret' } },
  options: {
    port: Number(env.MX_PORT),
    encrypt,
    trustServerCertificate: !env.MX_CA,
    serverName: env.MX_CA ? 'localhost' : undefined,
    cryptoCredentialsDetails: crypto,
    connectTimeout: 8000,
    requestTimeout: 8000,
    maxRetriesOnTransientErrors: 0,
    connectionRetryInterval: 500,
  },
});

let done = false;
function finish(line, code) {
  if (done) return;
  done = true;
  console.log(line);
  conn.close();
  process.exitCode = code;
}
conn.on('error', (e) => finish(`error: ${e.code || e.name}`, 1));
conn.on('connect', (err) => {
  if (err) return finish(`error: ${err.code || err.name}`, 1);
  let value = null;
  const req = new Request('SELECT 1', (e) => {
    if (e) return finish(`error: ${e.code || e.name}`, 1);
    finish(value === 1 ? 'ok' : 'error: unexpected row', value === 1 ? 0 : 1);
  });
  req.on('row', (cols) => { value = cols[0].value; });
  conn.execSqlBatch(req);
});
conn.connect();
