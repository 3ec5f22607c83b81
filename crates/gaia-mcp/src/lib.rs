//! Gaia's MCP server: the tools an agent uses (claims, approvals, events, the backlog), their
//! dispatch to the [`gaia_core::Gaia`] service with the API's roles, and what the transports
//! share: the protocol ([`Session`]), progress, and the registry of running calls that
//! cancellations reach ([`InFlight`]). `stdio` is the transport of `gaia mcp`; gaia-server
//! carries the same session over Streamable HTTP on `/mcp`. The protocol is JSON-RPC 2.0 as MCP
//! frames it, written here rather than taken from `rmcp`, whose current release needs a newer
//! Rust (1.88) than the workspace's `rust-version` (1.85).

pub mod approvals;
pub mod call;
pub mod caller;
pub mod inflight;
pub mod jsonrpc;
pub mod session;
pub mod stdio;
pub mod tools;

pub use approvals::Waits;
pub use call::Tools;
pub use caller::{Caller, RefusalAudit};
pub use inflight::InFlight;
pub use session::{PROTOCOL_VERSIONS, Progress, Session};
