//! Gaia's MCP server: the tools an agent uses (claims, approvals, events, the backlog), their dispatch to
//! the [`gaia_core::Gaia`] service with the API's roles, and the transports that carry them
//! (`stdio` for `gaia mcp`). The protocol is JSON-RPC 2.0 as MCP frames it, written here
//! rather than taken from `rmcp`, whose releases need a newer Rust than the workspace's.

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
pub use caller::Caller;
pub use inflight::InFlight;
pub use session::{PROTOCOL_VERSIONS, Progress, Session};
