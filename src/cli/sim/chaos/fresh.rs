//! Each run's own database: a SQLite file in memory-backed storage (`/dev/shm` where there is
//! one), or a PostgreSQL database created for the run and dropped after it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use payouts::domain::program::ProgramSet;
use payouts::storage::{DatabaseUrl, Store};

use super::setup;

/// Where each run's fresh database lives.
#[derive(Debug, Clone)]
pub(super) enum Backend {
    Sqlite,
    /// A server URL without a database name.
    Postgres(String),
}

pub(super) struct Fresh {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl Fresh {
    pub(super) async fn create(seed: u64, backend: &Backend) -> Result<Fresh> {
        let programs = setup::programs()?;
        match backend {
            Backend::Sqlite => {
                let dir = scratch()?;
                let path = dir.path().join("sim.db");
                std::fs::copy(template(&programs).await?, &path)
                    .context("copying the migrated template database")?;
                let store = Store::open_sqlite(&path, programs).await?;
                Ok(Fresh {
                    store,
                    _dir: Some(dir),
                    postgres: None,
                })
            }
            Backend::Postgres(server) => {
                let name = format!("payouts_sim_{seed}_{}", std::process::id());
                admin(
                    server,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await?;
                admin(server, &format!("CREATE DATABASE {name}")).await?;
                let url = DatabaseUrl::from(format!("{server}/{name}"));
                let store = Store::open(&url, programs).await?;
                Ok(Fresh {
                    store,
                    _dir: None,
                    postgres: Some((server.clone(), name)),
                })
            }
        }
    }

    /// Closes the store and drops a PostgreSQL database (a SQLite directory goes with it).
    pub(super) async fn remove(self) {
        self.store.close().await;
        if let Some((server, name)) = &self.postgres {
            let _ = admin(
                server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        }
    }
}

/// A directory in memory-backed storage where there is one.
fn scratch() -> Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    Ok(if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    })
}

thread_local! {
    /// This thread's migrated, empty SQLite database, copied for each run: migrating a fresh
    /// file every run would cost more than most runs.
    static TEMPLATE: std::cell::RefCell<Option<(tempfile::TempDir, PathBuf)>> =
        const { std::cell::RefCell::new(None) };
}

async fn template(programs: &Arc<ProgramSet>) -> Result<PathBuf> {
    if let Some(path) = TEMPLATE.with(|t| t.borrow().as_ref().map(|(_, p)| p.clone())) {
        return Ok(path);
    }
    let dir = scratch()?;
    let path = dir.path().join("template.db");
    Store::open_sqlite(&path, Arc::clone(programs))
        .await?
        .close()
        .await;
    TEMPLATE.with(|t| *t.borrow_mut() = Some((dir, path.clone())));
    Ok(path)
}

async fn admin(server: &str, statement: &str) -> Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .context("connecting to the PostgreSQL server")?;
    sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&mut conn)
        .await?;
    Ok(())
}
