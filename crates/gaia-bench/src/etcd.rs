//! etcd as a peer for locks: an `etcd` child process (Debian's `etcd-server` package; install
//! it with `apt-get install -y etcd-server` or `crates/gaia-bench/scripts/install-etcd.sh`) on
//! a temporary data directory and free ports, and the claim workload done the way etcd's own
//! lock recipe does it, over etcd's HTTP/JSON gateway: an acquire grants a lease and puts the
//! key in a transaction that succeeds only when the key does not exist; a release deletes the
//! key in a transaction that succeeds only when the caller holds it (the lease then expires).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use gaia_core::names::ClaimKey;
use serde::Deserialize;
use serde_json::json;

use crate::exit::{BenchError, bench_error};
use crate::harness::checked;
use crate::sample::Done;

/// The binary looked for on PATH.
const ETCD: &str = "etcd";
/// Lease of an acquisition, as Gaia's benchmark lease (etcd raises it to its minimum).
const LEASE_TTL_S: u64 = 1;

/// The `etcd` child, killed whenever this value is dropped.
#[derive(Debug)]
pub struct EtcdProcess {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`, the client URL.
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A port free right now on 127.0.0.1.
fn free_port() -> Result<u16, BenchError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl EtcdProcess {
    /// Starts a one-member etcd cluster on free ports and waits until it answers.
    pub async fn start() -> Result<Self, BenchError> {
        let dir = tempfile::tempdir()?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let base = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = tokio::process::Command::new(ETCD)
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={base}"))
            .arg(format!("--advertise-client-urls={base}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=bench={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                bench_error(
                    "cannot start etcd (install it with `apt-get install -y etcd-server`)",
                    e,
                )
            })?;
        let etcd = Self {
            child,
            base,
            _dir: dir,
        };
        etcd.wait_ready(etcd.log_path().as_path()).await?;
        Ok(etcd)
    }

    fn log_path(&self) -> std::path::PathBuf {
        self._dir.path().join("etcd.log")
    }

    async fn wait_ready(&self, log: &Path) -> Result<(), BenchError> {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let res = client.get(format!("{}/health", self.base)).send().await;
            if res.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        Err(bench_error(
            "etcd did not become healthy in 20 s",
            tail.join(" | "),
        ))
    }
}

/// Lock calls against etcd's JSON gateway; one client, so one connection pool.
#[derive(Debug)]
pub struct EtcdLocks {
    client: reqwest::Client,
    grant: String,
    txn: String,
}

#[derive(Debug, Deserialize)]
struct Lease {
    #[serde(rename = "ID")]
    id: String,
}

#[derive(Debug, Deserialize)]
struct Txn {
    #[serde(default)]
    succeeded: bool,
}

impl EtcdLocks {
    pub fn new(client: reqwest::Client, base: &str) -> Self {
        Self {
            client,
            grant: format!("{base}/v3/lease/grant"),
            txn: format!("{base}/v3/kv/txn"),
        }
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        body: serde_json::Value,
    ) -> Result<T, BenchError> {
        let res = self.client.post(url).json(&body).send().await;
        checked(res, "etcd request")
            .await?
            .json()
            .await
            .map_err(|e| bench_error("etcd reply", e))
    }

    /// Acquire: a lease, then put-if-absent; release: delete-if-mine. As Gaia's claim calls.
    pub async fn call(
        &self,
        key: &ClaimKey,
        claimer: &str,
        release: bool,
    ) -> Result<Done, BenchError> {
        let k = base64(format!("locks/{key}").as_bytes());
        let me = base64(claimer.as_bytes());
        let txn: Txn = if release {
            self.post(
                &self.txn,
                json!({
                    "compare": [{ "key": k, "target": "VALUE", "result": "EQUAL", "value": me }],
                    "success": [{ "request_delete_range": { "key": k } }],
                }),
            )
            .await?
        } else {
            let lease: Lease = self
                .post(&self.grant, json!({ "TTL": LEASE_TTL_S }))
                .await?;
            self.post(
                &self.txn,
                json!({
                    "compare": [{ "key": k, "target": "CREATE", "result": "EQUAL",
                                  "create_revision": "0" }],
                    "success": [{ "request_put": { "key": k, "value": me, "lease": lease.id } }],
                    "failure": [{ "request_range": { "key": k } }],
                }),
            )
            .await?
        };
        Ok(if txn.succeeded {
            Done::Wrote
        } else {
            Done::Noop
        })
    }
}

/// Standard base64 with padding, as etcd's JSON gateway expects keys and values.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
