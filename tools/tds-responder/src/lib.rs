//! tds-responder: a TDS (SQL Server) test responder for tdswatch's client matrix. It answers
//! PRELOGIN with a configured encryption setting, runs the TLS handshake wrapped in PRELOGIN
//! packets (accepting bare records mid-handshake) or TLS first for TDS 8.0 strict, reads LOGIN7
//! (never logging it), answers LOGINACK or ERROR 18456, answers `SELECT <int>` batches, and can
//! inject handshake faults. A test tool: it does not depend on, and is never part of, the agent.

pub mod config;
pub mod conn;
pub mod wire;

pub use config::{CertHash, Config, Encryption, Fault, LoginResult};
pub use conn::{handle, serve, ConnLog, Limits, Shared};
