//! Cleanup: planning from the retention settings, archiving, and pruning in bounded batches,
//! and checking an archive against the live audit chain.
//!
//! A cleanup is a job whose write-ahead record ([`Job`]) is kept in the store: `planned`
//! (what to take, decided once), `archived` (recorded only after the archive was written,
//! synced and read back), `done`. Rows are deleted only in `archived`, only those the verified
//! archive holds, in short transactions; so a run killed at any point has deleted nothing that
//! is not in a verified archive, and the next run resumes the open job before planning anew.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Gaia;
use crate::archive::{self, ArchiveError, Header, Manifest, Row};
use crate::audit::NewAudit;
use crate::claims::{Outcome, Request};
use crate::error::{Error, StoreError};
use crate::event::{EventFilter, NewEvent, kinds};
use crate::retention::{JOB_SETTING, Job, JobStatus, Kind, KindPlan, Plan, Retention, cutoff};
use crate::store::Change;

/// How a cleanup runs.
#[derive(Debug, Clone)]
pub struct CleanupOptions {
    pub retention: Retention,
    /// Where archives are written.
    pub archive_dir: PathBuf,
    /// Rows per delete transaction (and per page read while archiving).
    pub batch: u32,
    /// Who is recorded as having run it.
    pub actor: String,
    /// Names this run in the lease that keeps two cleanups of one store apart (a name, e.g.
    /// `cleanup-HOST-PID`: unique per run, so a run killed before releasing can be told from
    /// a live one).
    pub holder: String,
}

/// The claim (`STORY/TODOLIST`) that one cleanup run holds at a time.
pub const CLEANUP_LEASE: (&str, &str) = ("gaia-cleanup", "job");
/// The lease lapses this long after its holder stops renewing it (a killed run).
const LEASE_TTL: Duration = Duration::from_secs(15);
const LEASE_RENEW: Duration = Duration::from_secs(5);

/// Why a cleanup stopped. Nothing unarchived was deleted in any case.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The open job's record or archive does not agree with the store.
    #[error("cleanup job {job}: {reason}")]
    Job { job: String, reason: String },
    /// Another run holds the cleanup lease (the claim `gaia-cleanup/job`).
    #[error("another cleanup is running (held by {holder}); run again once it has ended")]
    Busy { holder: String },
    #[error(transparent)]
    Gaia(#[from] Error),
}

/// What an applied cleanup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The job, `done`; `None` when the plan took nothing.
    pub job: Option<Job>,
    /// Whether an open job of an earlier run was completed (rather than a new plan).
    pub resumed: bool,
    pub archive: Option<PathBuf>,
    /// Rows deleted per kind by this run.
    pub deleted: BTreeMap<Kind, u64>,
}

/// How an archive joins the live audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// Its last record is the live chain's anchor (or still stored, identical).
    Live,
    /// It ends before the live chain's anchor: an older archive, which the next one continues.
    Earlier { anchor_id: i64 },
    /// It holds no audit records.
    NoAudit,
    /// Its last record is not the one the live chain follows.
    Broken(String),
}

/// An archive read back on its own, and how it joins the live chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveCheck {
    pub manifest: Manifest,
    pub join: Join,
}

/// Hands progress lines to the caller (a terminal, a log).
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

impl Gaia {
    /// What a cleanup would take now under `retention`.
    pub async fn plan_cleanup(&self, retention: &Retention) -> Result<Plan, StoreError> {
        let now = self.store.now().await?;
        let head = self.store.audit_head().await?;
        let mut kinds = Vec::new();
        for kind in Kind::ALL {
            let Some(keep) = retention.keep(kind) else {
                continue;
            };
            let before = cutoff(now, keep);
            let span = match kind {
                Kind::Event => self.store.retention_events(before).await?,
                Kind::Audit => self.store.retention_audit(before).await?,
                Kind::Outbox => self.store.retention_outbox(before).await?,
                Kind::Command => self.store.retention_commands(before).await?,
            };
            kinds.push(KindPlan {
                kind,
                keep_ms: u64::try_from(keep.as_millis()).unwrap_or(u64::MAX),
                cutoff: before,
                span,
            });
        }
        Ok(Plan {
            now,
            kinds,
            audit_anchor_id: head.anchor_id,
            audit_anchor_hash: head.anchor_hash,
        })
    }

    /// The cleanup job an earlier run left unfinished, if any.
    pub async fn open_cleanup_job(&self) -> Result<Option<Job>, CleanupError> {
        let text = self.store.setting_get_or_init(JOB_SETTING, "").await?;
        if text.is_empty() {
            return Ok(None);
        }
        let job: Job = serde_json::from_str(&text).map_err(|e| CleanupError::Job {
            job: "?".into(),
            reason: format!("unreadable job record in setting {JOB_SETTING}: {e}"),
        })?;
        Ok((job.status != JobStatus::Done).then_some(job))
    }

    async fn save_job(&self, job: &Job) -> Result<(), CleanupError> {
        let text = serde_json::to_string(job).map_err(|e| CleanupError::Job {
            job: job.id.clone(),
            reason: e.to_string(),
        })?;
        Ok(self.store.setting_set(JOB_SETTING, &text).await?)
    }

    /// Completes the open job, or plans a new one and runs it: archive, verify, delete. One
    /// run at a time per store: the run holds the claim `gaia-cleanup/job`, renewed while it works, so a
    /// second run stops at once with [`CleanupError::Busy`] instead of overwriting the job.
    pub async fn apply_cleanup(
        &self,
        opts: &CleanupOptions,
        progress: Progress<'_>,
    ) -> Result<Applied, CleanupError> {
        let key =
            crate::names::ClaimKey::new(CLEANUP_LEASE.0, CLEANUP_LEASE.1).map_err(Error::from)?;
        let acquire = Request::acquire(key.clone(), &opts.holder, None, None, Some(LEASE_TTL))
            .map_err(Error::from)?;
        let taken = self.apply_claim(&acquire).await?;
        if !matches!(
            taken.outcome,
            Outcome::Acquired | Outcome::AlreadyHeld | Outcome::TakenOver
        ) {
            let holder = taken.holder.map_or_else(|| "?".to_owned(), |h| h.agent);
            return Err(CleanupError::Busy { holder });
        }
        let renewer = {
            let gaia = self.clone();
            let refresh = Request::refresh(key.clone(), &opts.holder, None, Some(LEASE_TTL))
                .map_err(Error::from)?;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_RENEW).await;
                    // A lost renewal is harmless to the data: every delete is of rows a
                    // verified archive holds; the lease only keeps the job record whole.
                    let _ = gaia.apply_claim(&refresh).await;
                }
            })
        };
        let result = self.apply_cleanup_leased(opts, progress).await;
        renewer.abort();
        let _ = self.release_lease(&key, &opts.holder).await;
        result
    }

    /// Lets go of the cleanup lease that `holder` holds: for a run known to be gone (killed on
    /// this host), so the next run need not wait for the lease to lapse.
    pub async fn release_cleanup_lease(&self, holder: &str) -> Result<(), Error> {
        let key = crate::names::ClaimKey::new(CLEANUP_LEASE.0, CLEANUP_LEASE.1)?;
        self.release_lease(&key, holder).await
    }

    async fn apply_cleanup_leased(
        &self,
        opts: &CleanupOptions,
        progress: Progress<'_>,
    ) -> Result<Applied, CleanupError> {
        let batch = opts.batch.max(1);
        let (mut job, resumed) = match self.open_cleanup_job().await? {
            Some(job) => {
                progress(&format!(
                    "resuming cleanup job {} ({:?})",
                    job.id, job.status
                ));
                (job, true)
            }
            None => {
                let plan = self.plan_cleanup(&opts.retention).await?;
                if plan.total() == 0 {
                    return Ok(Applied {
                        job: None,
                        resumed: false,
                        archive: None,
                        deleted: BTreeMap::new(),
                    });
                }
                let job = Job {
                    id: Job::id_for(plan.now),
                    status: JobStatus::Planned,
                    plan,
                    archive: None,
                    sha256: None,
                };
                self.save_job(&job).await?;
                (job, false)
            }
        };
        if job.status == JobStatus::Planned {
            let path = archive::archive_path(&opts.archive_dir, &job.id);
            progress(&format!("archiving to {}", path.display()));
            self.write_archive(&job, &path, batch, progress).await?;
            let contents = archive::verify(&path)?;
            for k in &job.plan.kinds {
                let archived = contents.manifest.counts.get(k.kind.as_str()).copied();
                // Events and audit records never change: the archive must hold the plan's.
                let exact = matches!(k.kind, Kind::Event | Kind::Audit);
                if exact && archived.unwrap_or(0) != k.span.count {
                    return Err(CleanupError::Job {
                        job: job.id.clone(),
                        reason: format!(
                            "the archive holds {} {} rows, the plan {}",
                            archived.unwrap_or(0),
                            k.kind.as_str(),
                            k.span.count
                        ),
                    });
                }
            }
            progress(&format!(
                "archive verified: sha256 {}",
                contents.manifest.sha256
            ));
            job.status = JobStatus::Archived;
            job.archive = Some(path.to_string_lossy().into_owned());
            job.sha256 = Some(contents.manifest.sha256);
            self.save_job(&job).await?;
        }
        let path = PathBuf::from(job.archive.clone().unwrap_or_default());
        let deleted = self.prune_archived(&job, &path, batch, progress).await?;
        job.status = JobStatus::Done;
        self.save_job(&job).await?;
        let data = serde_json::json!({
            "job": job.id,
            "archive": path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "sha256": job.sha256,
            "deleted": deleted.iter().map(|(k, n)| (k.as_str(), n)).collect::<BTreeMap<_, _>>(),
        });
        let change = Change {
            events: vec![NewEvent::new(
                kinds::CLEANUP_APPLIED,
                &opts.actor,
                format!("cleanup/{}", job.id),
                data.clone(),
            )],
            audit: vec![NewAudit::new(
                &opts.actor,
                kinds::CLEANUP_APPLIED,
                format!("cleanup/{}", job.id),
                "done",
                data,
            )],
        };
        let events = self.store.append(change).await?;
        self.mirror(&events);
        Ok(Applied {
            job: Some(job),
            resumed,
            archive: Some(path),
            deleted,
        })
    }

    /// Writes every row the job's plan takes, page by page, to a new archive at `path`.
    async fn write_archive(
        &self,
        job: &Job,
        path: &Path,
        batch: u32,
        progress: Progress<'_>,
    ) -> Result<(), CleanupError> {
        let plan = &job.plan;
        let mut w = archive::Writer::create(
            path,
            Header {
                gaia_archive: archive::FORMAT,
                job: job.id.clone(),
                audit_anchor_id: plan.audit_anchor_id,
                audit_anchor_hash: plan.audit_anchor_hash.clone(),
            },
        )?;
        for k in &plan.kinds {
            let mut written = 0u64;
            match k.kind {
                Kind::Event => {
                    let (Some(low), Some(high)) = (k.span.low, k.span.high) else {
                        continue;
                    };
                    let mut after = low - 1;
                    while after < high {
                        let page = self
                            .store
                            .events_after(after, &EventFilter::default(), batch)
                            .await?;
                        let Some(last) = page.last() else { break };
                        after = last.seq;
                        for e in page.into_iter().filter(|e| e.seq <= high) {
                            w.push(&Row::Event(e))?;
                            written += 1;
                        }
                    }
                }
                Kind::Audit => {
                    let Some(high) = k.span.high else { continue };
                    let mut after = plan.audit_anchor_id;
                    while after < high {
                        let page = self.store.audit_page(after, batch).await?;
                        let Some(last) = page.last() else { break };
                        after = last.id;
                        for r in page.into_iter().filter(|r| r.id <= high) {
                            w.push(&Row::Audit(r))?;
                            written += 1;
                        }
                    }
                }
                Kind::Outbox => {
                    let Some(high) = k.span.high else { continue };
                    let mut after = 0;
                    loop {
                        let page = self
                            .store
                            .retention_outbox_page(k.cutoff, after, high, batch)
                            .await?;
                        let Some(last) = page.last() else { break };
                        after = last.id;
                        for m in page {
                            w.push(&Row::Outbox(m.to_json()))?;
                            written += 1;
                        }
                    }
                }
                Kind::Command => {
                    let mut after = String::new();
                    loop {
                        let page = self
                            .store
                            .retention_command_page(k.cutoff, &after, batch)
                            .await?;
                        let Some(last) = page.last() else { break };
                        after.clone_from(&last.id);
                        for c in page {
                            w.push(&Row::Command(c.to_json()))?;
                            written += 1;
                        }
                    }
                }
            }
            progress(&format!("archived {written} {} rows", k.kind.as_str()));
        }
        w.finish()?;
        Ok(())
    }

    /// Deletes what the job's verified archive holds, one short transaction per batch.
    async fn prune_archived(
        &self,
        job: &Job,
        path: &Path,
        batch: u32,
        progress: Progress<'_>,
    ) -> Result<BTreeMap<Kind, u64>, CleanupError> {
        let contents = archive::verify(path)?;
        if Some(&contents.manifest.sha256) != job.sha256.as_ref() {
            return Err(CleanupError::Job {
                job: job.id.clone(),
                reason: format!(
                    "{} is not the archive this job verified (its SHA-256 differs)",
                    path.display()
                ),
            });
        }
        progress(&format!("pruning what {} holds", path.display()));
        let store = &self.store;
        let step = i64::from(batch);
        let mut deleted = BTreeMap::new();
        if let Some((low, high)) = contents.manifest.events {
            let mut n = 0;
            let mut from = low;
            while from <= high {
                let to = high.min(from + step - 1);
                n += prune_batch(progress, || async move {
                    crate::usecase::cleanup::delete_events(store.begin_write().await?, from, to)
                        .await
                })
                .await?;
                from = to + 1;
                tokio::task::yield_now().await;
            }
            progress(&format!("pruned {n} events"));
            deleted.insert(Kind::Event, n);
        }
        if let Some(span) = &contents.manifest.audit {
            // The hash of each batch's last record, for the anchor that batch leaves behind.
            let marks = audit_marks(path, span.first, step)?;
            let mut n = 0;
            let mut from = span.first;
            for (to, hash) in marks {
                let hash = hash.as_str();
                n += prune_batch(progress, || async move {
                    let tx = store.begin_write().await?;
                    crate::usecase::cleanup::prune_audit(tx, from, to, hash).await
                })
                .await?;
                from = to + 1;
                tokio::task::yield_now().await;
            }
            progress(&format!("pruned {n} audit records"));
            deleted.insert(Kind::Audit, n);
        }
        if !contents.outbox.is_empty() {
            let mut n = 0;
            for ids in contents.outbox.chunks(batch as usize) {
                n += prune_batch(progress, || async move {
                    crate::usecase::cleanup::delete_outbox(store.begin_write().await?, ids).await
                })
                .await?;
                tokio::task::yield_now().await;
            }
            progress(&format!("pruned {n} outbox rows"));
            deleted.insert(Kind::Outbox, n);
        }
        if !contents.commands.is_empty() {
            let mut n = 0;
            for ids in contents.commands.chunks(batch as usize) {
                n += prune_batch(progress, || async move {
                    crate::usecase::cleanup::delete_commands(store.begin_write().await?, ids).await
                })
                .await?;
                tokio::task::yield_now().await;
            }
            progress(&format!("pruned {n} requests"));
            deleted.insert(Kind::Command, n);
        }
        Ok(deleted)
    }

    /// Reads an archive back on its own (digest, rows, its audit chain from its anchor) and
    /// checks that the live chain continues from its last record.
    pub async fn verify_archive(&self, path: &Path) -> Result<ArchiveCheck, CleanupError> {
        let contents = archive::verify(path)?;
        let head = self.store.audit_head().await?;
        let join = match &contents.manifest.audit {
            None => Join::NoAudit,
            Some(span) if span.last < head.anchor_id => Join::Earlier {
                anchor_id: head.anchor_id,
            },
            Some(span) if span.last == head.anchor_id => {
                if span.last_hash == head.anchor_hash {
                    Join::Live
                } else {
                    Join::Broken(format!(
                        "record #{} in the archive is not the live chain's anchor (hashes differ)",
                        span.last
                    ))
                }
            }
            Some(span) => {
                // Not pruned yet (a job still open): the stored record must be the same one.
                let stored = self.store.audit_page(span.last - 1, 1).await?;
                match stored.first() {
                    Some(r) if r.id == span.last && r.hash == span.last_hash => Join::Live,
                    _ => Join::Broken(format!(
                        "record #{} in the archive is not the stored record #{}",
                        span.last, span.last
                    )),
                }
            }
        };
        Ok(ArchiveCheck {
            manifest: contents.manifest,
            join,
        })
    }
}

/// How many times a prune batch that waited past the lock timeout is tried again.
const LOCK_RETRIES: u32 = 3;

/// Runs one prune batch, and again (up to [`LOCK_RETRIES`] times) when it waited past the lock
/// timeout. Busy writers beside a cleanup can keep the store's write lock for seconds on end
/// (SQLite's lock goes to whoever asks at the moment it is free, which a process writing in a
/// tight loop nearly always is, while a process waiting for it sleeps between tries); and a
/// batch is safe to repeat, since it deletes only archived rows that still match (nothing
/// twice). Any other failure, or the last timeout, ends the cleanup as before.
async fn prune_batch<F, Fut>(progress: Progress<'_>, mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut retries = 0;
    loop {
        match batch().await {
            Err(StoreError::LockTimeout) if retries < LOCK_RETRIES => {
                retries += 1;
                progress(&format!(
                    "a batch waited past the lock timeout; trying it again ({retries} of {LOCK_RETRIES})"
                ));
            }
            done => return done,
        }
    }
}

/// The (id, hash) of every `step`-th audit record from `first` and of the last one: the ends
/// of the prune batches.
fn audit_marks(path: &Path, first: i64, step: i64) -> Result<Vec<(i64, String)>, ArchiveError> {
    let mut marks = Vec::new();
    let mut last = None;
    archive::for_each_row(path, |_, row| {
        if let Row::Audit(r) = row {
            if (r.id - first + 1) % step == 0 {
                marks.push((r.id, r.hash.clone()));
            }
            last = Some((r.id, r.hash));
        }
        Ok(())
    })?;
    if let Some(last) = last {
        if marks.last() != Some(&last) {
            marks.push(last);
        }
    }
    Ok(marks)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Runs `prune_batch` over a batch that fails with `fail(attempt)` until it returns
    /// `None`; returns the outcome, the attempts and what progress said.
    async fn tried(
        fail: impl Fn(u32) -> Option<StoreError>,
    ) -> (Result<u64, StoreError>, u32, Vec<String>) {
        let attempts = AtomicU32::new(0);
        let said = Mutex::new(Vec::new());
        let progress = |m: &str| said.lock().unwrap().push(m.to_owned());
        let out = prune_batch(&progress, || {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            let failed = fail(attempt);
            async move { failed.map_or(Ok(7), Err) }
        })
        .await;
        let said = said.into_inner().unwrap();
        (out, attempts.into_inner(), said)
    }

    #[tokio::test]
    async fn a_batch_that_waited_past_the_lock_timeout_is_tried_again() {
        let (out, attempts, said) = tried(|n| (n <= 2).then_some(StoreError::LockTimeout)).await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(attempts, 3);
        assert_eq!(said.len(), 2);
        assert!(said[1].contains("(2 of 3)"), "{said:?}");
    }

    #[tokio::test]
    async fn a_batch_gives_up_after_its_retries_and_on_any_other_error() {
        let (out, attempts, _) = tried(|_| Some(StoreError::LockTimeout)).await;
        assert!(matches!(out, Err(StoreError::LockTimeout)), "{out:?}");
        assert_eq!(attempts, 1 + LOCK_RETRIES);

        let (out, attempts, said) = tried(|_| Some(StoreError::Backend("disk full".into()))).await;
        assert!(matches!(out, Err(StoreError::Backend(_))), "{out:?}");
        assert_eq!(attempts, 1);
        assert!(said.is_empty());
    }
}
