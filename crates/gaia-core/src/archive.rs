//! Cleanup archives: gzip-compressed NDJSON with a SHA-256 manifest beside it.
//!
//! `NAME.ndjson.gz` holds a header line (format, job, the audit chain's anchor the archived
//! records follow), then one line per row, `{"kind":"event","row":{…}}`: events and audit
//! records exactly as stored (an audit record with its hashes, so the archive verifies on its
//! own), outbox rows and approval requests as their JSON views. `NAME.ndjson.gz.manifest.json`
//! holds the file's SHA-256 and size and the count and key range of each kind.
//!
//! A [`Writer`] writes to a `.part` file, syncs it, renames it into place and then writes the
//! manifest the same way, so an archive with a manifest is always complete; [`verify`] reads
//! one back (digest, every line, each kind's keys unique, events contiguous, the audit records
//! chained from the header's anchor) and returns the keys it holds, which are exactly what a
//! cleanup deletes.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{AuditRecord, ChainHead, Verifier};
use crate::event::Event;
use crate::retention::Kind;

/// The archive format this Gaia writes and reads.
pub const FORMAT: u32 = 1;

/// Why an archive cannot be written or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ArchiveError + '_ {
    move |error| ArchiveError::Io {
        path: path.to_owned(),
        error,
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The first line of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub gaia_archive: u32,
    pub job: String,
    /// The audit record just before the first archived one.
    pub audit_anchor_id: i64,
    pub audit_anchor_hash: String,
}

/// One archived row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "row", rename_all = "snake_case")]
pub enum Row {
    Event(Event),
    Audit(AuditRecord),
    Outbox(serde_json::Value),
    Command(serde_json::Value),
}

/// The archived audit records: their ids, and the hashes the chain joins at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSpan {
    pub first: i64,
    pub last: i64,
    /// The hash the first record follows (the anchor's).
    pub anchor_hash: String,
    /// The last record's hash: the live chain's next record follows it.
    pub last_hash: String,
}

/// The file beside an archive that names its digest and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub job: String,
    /// The archive's file name (the manifest sits beside it).
    pub archive: String,
    pub sha256: String,
    pub bytes: u64,
    pub counts: BTreeMap<String, u64>,
    /// The first and last archived event seq.
    pub events: Option<(i64, i64)>,
    pub audit: Option<AuditSpan>,
}

/// Where the manifest of `archive` is.
pub fn manifest_path(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

/// The archive file of job `job` in `dir`.
pub fn archive_path(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("gaia-cleanup-{job}.ndjson.gz"))
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Writes one archive (see the module docs for the order that keeps it whole).
pub struct Writer {
    path: PathBuf,
    part: PathBuf,
    out: GzEncoder<BufWriter<File>>,
    header: Header,
    counts: BTreeMap<String, u64>,
    events: Option<(i64, i64)>,
    audit: Option<AuditSpan>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("path", &self.path).finish()
    }
}

impl Writer {
    /// Starts `path` (its `.part` file, replacing one a killed run left) with the header.
    pub fn create(path: &Path, header: Header) -> Result<Self, ArchiveError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let part = part_path(path);
        let file = File::create(&part).map_err(io(&part))?;
        let mut w = Self {
            path: path.to_owned(),
            out: GzEncoder::new(BufWriter::new(file), Compression::default()),
            part,
            header,
            counts: BTreeMap::new(),
            events: None,
            audit: None,
        };
        let line = serde_json::to_string(&w.header).map_err(|e| invalid(&w.part, e.to_string()))?;
        w.line(&line)?;
        Ok(w)
    }

    fn line(&mut self, line: &str) -> Result<(), ArchiveError> {
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(io(&self.part))
    }

    /// Appends one row. Events and audit records must come in key order.
    pub fn push(&mut self, row: &Row) -> Result<(), ArchiveError> {
        let kind = match row {
            Row::Event(e) => {
                self.events = Some(self.events.map_or((e.seq, e.seq), |(lo, _)| (lo, e.seq)));
                Kind::Event
            }
            Row::Audit(r) => {
                match &mut self.audit {
                    Some(span) => {
                        span.last = r.id;
                        span.last_hash.clone_from(&r.hash);
                    }
                    None => {
                        self.audit = Some(AuditSpan {
                            first: r.id,
                            last: r.id,
                            anchor_hash: r.prev_hash.clone(),
                            last_hash: r.hash.clone(),
                        });
                    }
                }
                Kind::Audit
            }
            Row::Outbox(_) => Kind::Outbox,
            Row::Command(_) => Kind::Command,
        };
        *self.counts.entry(kind.as_str().to_owned()).or_default() += 1;
        let line = serde_json::to_string(row).map_err(|e| invalid(&self.part, e.to_string()))?;
        self.line(&line)
    }

    /// Ends the stream, syncs and renames the file into place, then writes its manifest.
    pub fn finish(self) -> Result<Manifest, ArchiveError> {
        let part = self.part;
        let file = self
            .out
            .finish()
            .and_then(|w| w.into_inner().map_err(std::io::IntoInnerError::into_error))
            .map_err(io(&part))?;
        file.sync_all().map_err(io(&part))?;
        drop(file);
        let (sha256, bytes) = digest(&part)?;
        std::fs::rename(&part, &self.path).map_err(io(&self.path))?;
        let manifest = Manifest {
            format: FORMAT,
            job: self.header.job,
            archive: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256,
            bytes,
            counts: self.counts,
            events: self.events,
            audit: self.audit,
        };
        let mpath = manifest_path(&self.path);
        let mpart = part_path(&mpath);
        let text =
            serde_json::to_string_pretty(&manifest).map_err(|e| invalid(&mpath, e.to_string()))?;
        let mut f = File::create(&mpart).map_err(io(&mpart))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(&mpart))?;
        std::fs::rename(&mpart, &mpath).map_err(io(&mpath))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The renames are durable once the directory is synced.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        Ok(manifest)
    }
}

/// The SHA-256 (hex) and length of a file.
fn digest(path: &Path) -> Result<(String, u64), ArchiveError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// What a verified archive holds: every key, so that a cleanup deletes exactly these rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    pub manifest: Manifest,
    pub header: Header,
    pub outbox: Vec<i64>,
    pub commands: Vec<String>,
}

/// Reads the manifest of `archive`.
pub fn read_manifest(archive: &Path) -> Result<Manifest, ArchiveError> {
    let mpath = manifest_path(archive);
    let text = std::fs::read_to_string(&mpath).map_err(io(&mpath))?;
    serde_json::from_str(&text).map_err(|e| invalid(&mpath, format!("unreadable manifest: {e}")))
}

/// Calls `f` with the header and then every row of `archive`, in order, after checking the
/// file against its manifest's digest.
pub fn for_each_row(
    archive: &Path,
    mut f: impl FnMut(&Header, Row) -> Result<(), ArchiveError>,
) -> Result<(Manifest, Header), ArchiveError> {
    let manifest = read_manifest(archive)?;
    if manifest.format != FORMAT {
        return Err(invalid(
            archive,
            format!("archive format {} is not {FORMAT}", manifest.format),
        ));
    }
    let (sha256, bytes) = digest(archive)?;
    if sha256 != manifest.sha256 || bytes != manifest.bytes {
        return Err(invalid(
            archive,
            "the file does not match its manifest's SHA-256 (changed or truncated)",
        ));
    }
    let file = File::open(archive).map_err(io(archive))?;
    let mut lines = BufReader::new(GzDecoder::new(BufReader::new(file))).lines();
    let first = lines
        .next()
        .ok_or_else(|| invalid(archive, "empty archive"))?
        .map_err(io(archive))?;
    let header: Header = serde_json::from_str(&first)
        .map_err(|e| invalid(archive, format!("unreadable header: {e}")))?;
    if header.gaia_archive != FORMAT || header.job != manifest.job {
        return Err(invalid(archive, "the header does not match the manifest"));
    }
    for (n, line) in lines.enumerate() {
        let line = line.map_err(io(archive))?;
        let row: Row = serde_json::from_str(&line)
            .map_err(|e| invalid(archive, format!("line {}: {e}", n + 2)))?;
        f(&header, row)?;
    }
    Ok((manifest, header))
}

/// Reads `archive` back and checks everything it can on its own (see the module docs).
pub fn verify(archive: &Path) -> Result<Contents, ArchiveError> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut next_seq: Option<i64> = None;
    let mut events: Option<(i64, i64)> = None;
    let mut chain: Option<Verifier> = None;
    let mut audit: Option<AuditSpan> = None;
    let mut outbox = Vec::new();
    let mut outbox_seen = HashSet::new();
    let mut commands = Vec::new();
    let mut commands_seen = HashSet::new();
    let (manifest, header) = for_each_row(archive, |header, row| {
        let kind = match row {
            Row::Event(e) => {
                if next_seq.is_some_and(|n| n != e.seq) {
                    return Err(invalid(
                        archive,
                        format!(
                            "event {} out of sequence (archived events are contiguous)",
                            e.seq
                        ),
                    ));
                }
                next_seq = Some(e.seq + 1);
                events = Some(events.map_or((e.seq, e.seq), |(lo, _)| (lo, e.seq)));
                Kind::Event
            }
            Row::Audit(r) => {
                let v = chain.get_or_insert_with(|| {
                    Verifier::new(&ChainHead {
                        anchor_id: header.audit_anchor_id,
                        anchor_hash: header.audit_anchor_hash.clone(),
                        last_id: 0,
                        last_hash: String::new(),
                    })
                });
                if !v.feed(&r) {
                    let reason = v.first_break().map_or("", |b| b.reason.as_str());
                    return Err(invalid(archive, format!("audit chain broken: {reason}")));
                }
                match &mut audit {
                    Some(span) => {
                        span.last = r.id;
                        span.last_hash = r.hash;
                    }
                    None => {
                        audit = Some(AuditSpan {
                            first: r.id,
                            last: r.id,
                            anchor_hash: r.prev_hash,
                            last_hash: r.hash,
                        });
                    }
                }
                Kind::Audit
            }
            Row::Outbox(v) => {
                let id = v["id"]
                    .as_i64()
                    .ok_or_else(|| invalid(archive, "an outbox row without an id"))?;
                if !outbox_seen.insert(id) {
                    return Err(invalid(archive, format!("outbox row {id} archived twice")));
                }
                outbox.push(id);
                Kind::Outbox
            }
            Row::Command(v) => {
                let id = v["id"]
                    .as_str()
                    .ok_or_else(|| invalid(archive, "a request without an id"))?
                    .to_owned();
                if !commands_seen.insert(id.clone()) {
                    return Err(invalid(archive, format!("request {id} archived twice")));
                }
                commands.push(id);
                Kind::Command
            }
        };
        *counts.entry(kind.as_str().to_owned()).or_default() += 1;
        Ok(())
    })?;
    if counts != manifest.counts || events != manifest.events || audit != manifest.audit {
        return Err(invalid(
            archive,
            "the rows do not match the manifest's counts and ranges",
        ));
    }
    Ok(Contents {
        manifest,
        header,
        outbox,
        commands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{GENESIS_HASH, NewAudit};
    use crate::time::from_micros;

    fn write(dir: &Path, tamper_chain: bool) -> PathBuf {
        let path = archive_path(dir, "job1");
        let mut w = Writer::create(
            &path,
            Header {
                gaia_archive: FORMAT,
                job: "job1".into(),
                audit_anchor_id: 0,
                audit_anchor_hash: GENESIS_HASH.into(),
            },
        )
        .expect("create");
        let mut prev = GENESIS_HASH.to_owned();
        for id in 1..=3 {
            let mut r = NewAudit::new("a", "x", "s", "ok", serde_json::json!({"n": id})).seal(
                id,
                from_micros(id),
                &prev,
            );
            prev.clone_from(&r.hash);
            if tamper_chain && id == 2 {
                r.outcome = "edited".into();
            }
            w.push(&Row::Audit(r)).expect("push");
        }
        for seq in 5..=7 {
            w.push(&Row::Event(Event {
                seq,
                ts: from_micros(seq),
                kind: "k".into(),
                actor: "a".into(),
                subject: "s".into(),
                data: serde_json::json!({}),
            }))
            .expect("push");
        }
        w.push(&Row::Outbox(serde_json::json!({"id": 9})))
            .expect("push");
        w.push(&Row::Command(serde_json::json!({"id": "c1"})))
            .expect("push");
        w.finish().expect("finish");
        path
    }

    #[test]
    fn an_archive_reads_back_with_its_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), false);
        let c = verify(&path).expect("verifies");
        assert_eq!(c.manifest.events, Some((5, 7)));
        let audit = c.manifest.audit.expect("audit span");
        assert_eq!((audit.first, audit.last), (1, 3));
        assert_eq!(c.outbox, vec![9]);
        assert_eq!(c.commands, vec!["c1".to_owned()]);
        assert!(!part_path(&path).exists());
    }

    #[test]
    fn a_changed_or_inconsistent_archive_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), true);
        let err = verify(&path).expect_err("edited record");
        assert!(err.to_string().contains("audit chain broken"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), false);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        let err = verify(&path).expect_err("changed file");
        assert!(err.to_string().contains("SHA-256"), "{err}");

        std::fs::remove_file(manifest_path(&path)).expect("rm");
        assert!(matches!(verify(&path), Err(ArchiveError::Io { .. })));
    }
}
