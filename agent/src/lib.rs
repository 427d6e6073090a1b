//! tdswatch: watches Microsoft SQL Server (TDS) connections on the wire and gives one verdict per
//! connection on how its handshake went.
//!
//! The data path is a pipeline, one module per stage, and imports point down it only:
//! `capture → decode → conntrack → tds → tls → handshake → verdict → output`.
//! [`pipeline`] wires the stages together; it runs the same under `analyze` (a file, one thread) and
//! under the live agent.

pub mod agent;
pub mod capture;
pub mod config;
pub mod conntrack;
pub mod decode;
pub mod handshake;
pub mod output;
pub mod pipeline;
pub mod settings;
pub mod tds;
pub mod tls;
pub mod verdict;
