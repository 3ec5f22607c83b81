//! The operations commands' arguments: `env-run`, `backup`, `restore`, `store copy`, `doctor`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct EnvRunArgs {
    /// The command and its arguments, after `--`; run directly (no shell) with the env file's
    /// variables added to the environment.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub argv: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the backup (SQLite: a database file; PostgreSQL: a `pg_dump -Fc` archive).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file `gaia backup` wrote; restored into the configured database, which must be empty.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a whole deployment into an empty store (e.g. from SQLite to PostgreSQL), keeping
    /// event seqs, the audit chain and claim fencing tokens.
    Copy {
        /// The store to read: sqlite://PATH or postgres://USER@HOST/DB.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The empty store to write.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object: every check with its status and fix.
    #[arg(long)]
    pub json: bool,
}
