//! JA4 TLS client fingerprint (FoxIO, BSD-3-Clause; JA4 only: JA4S/JA4X carry another licence).

use super::ClientHello;

/// Computes JA4 from the raw ClientHello parts it needs.
pub fn ja4(
    hello: &ClientHello,
    extensions: &[u16],
    signature_algorithms: &[u16],
    raw_suites: &[u16],
) -> String {
    let _ = (hello, extensions, signature_algorithms, raw_suites);
    todo!("ja4")
}
