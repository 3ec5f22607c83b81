//! Opens the store the configuration names, choosing the backend from the URL's scheme.

use std::sync::Arc;

use gaia_core::Gaia;
use gaia_core::StoreError;
use gaia_core::redact::Redactor;
use gaia_core::store::Store;
use gaia_store_postgres::PgStore;
use gaia_store_sqlite::SqliteStore;

use crate::config::Config;

/// Opens `url` with the configured options: `sqlite:` URLs on SQLite,
/// `postgres://`/`postgresql://` on PostgreSQL. A SQLite store of a one-shot command keeps a
/// single connection ([`SqliteStore::open_one_shot`]): a second one would be opened and
/// discarded within the same few milliseconds.
pub async fn open_store(url: &str, config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let opts = config.store_options();
    if url.starts_with("sqlite:") {
        if config.one_shot {
            Ok(Arc::new(SqliteStore::open_one_shot(url, &opts).await?))
        } else {
            Ok(Arc::new(SqliteStore::open(url, &opts).await?))
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url, &opts).await?))
    } else {
        Err(StoreError::BadUrl(
            "use sqlite://PATH or postgres://USER@HOST/DATABASE".into(),
        ))
    }
}

/// The service over the configured store, with the NDJSON sink and secret redaction set up.
pub async fn gaia(config: &Config) -> Result<Gaia, StoreError> {
    let store = open_store(&config.database_url, config).await?;
    Ok(Gaia::new(store)
        .with_ndjson_sink(config.ndjson_path.clone())
        .with_redactor(Redactor::new(config.secret_values()))
        .with_policy(config.policy.clone())
        .with_notify(config.notify_targets()))
}

/// The schema version this build writes for the backend `url` names.
pub fn schema_version(url: &str) -> i64 {
    if url.starts_with("sqlite:") {
        gaia_store_sqlite::SCHEMA_VERSION
    } else {
        gaia_store_postgres::SCHEMA_VERSION
    }
}
