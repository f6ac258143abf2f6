//! [`Servers`]: the engine's connections to the source server and, when the archive has its
//! own (`[archive] url`), to the archive server. Reconnects patiently after a lost connection,
//! within the job's reconnection window, and keeps the source session's `NOW()` pinned to the
//! run being executed. Every wait listens to [`Shutdown`].

use std::time::{Duration, Instant};

use mysql_async::Conn;

use super::backoff::Backoff;
use super::shutdown::Shutdown;
use super::Halt;
use crate::config::{Endpoint, JobConfig};
use crate::db::{self, Accepts, DbError};
use crate::event::ErrorClass;

/// The connections of a run.
pub struct Servers<'a> {
    /// The job.
    config: &'a JobConfig,
    /// The source connection, once made.
    source: Option<Conn>,
    /// The `NOW()` the source session is pinned to, if any.
    source_now_unix_us: Option<i64>,
    /// The archive server's own connection, when the job has one.
    archive: Option<Conn>,
    /// What the servers take of the two-step batch's preferred statements (`LOAD DATA LOCAL`,
    /// `DELETE ... RETURNING`), until each refuses once.
    pub accepts: Accepts,
    /// Idle source connections for batches in flight beside the loop's own (`parallel`),
    /// each with the `NOW()` its session is pinned to.
    spare: Vec<(Conn, i64)>,
    /// Idle archive connections for two-server batches in flight beside the loop's own.
    spare_archive: Vec<Conn>,
    /// Interrupts reconnecting.
    shutdown: Shutdown,
}

/// Connects to `endpoint`, retrying transient failures with [`Backoff::RECONNECT`] for up to
/// `window`; a stop request ends the wait with [`Halt::Stop`].
pub async fn connect_patiently(
    endpoint: &Endpoint,
    lock_wait_timeout_s: u32,
    window: Duration,
    shutdown: &mut Shutdown,
) -> Result<Conn, Halt> {
    let start = Instant::now();
    let mut failures = 0;
    loop {
        let error = match db::connect(endpoint, lock_wait_timeout_s).await {
            Ok(conn) => return Ok(conn),
            Err(error) if error.class() == ErrorClass::Transient => error,
            Err(error) => return Err(error.into()),
        };
        if start.elapsed() >= window {
            return Err(DbError::Unreachable(format!(
                "{error} (gave up after {} s of reconnecting; the next run resumes)",
                start.elapsed().as_secs()
            ))
            .into());
        }
        failures += 1;
        let delay = Backoff::RECONNECT.delay(failures);
        tracing::info!("{error}; retrying in {} ms", delay.as_millis());
        if shutdown.sleep(delay).await {
            return Err(Halt::Stop);
        }
    }
}

impl<'a> Servers<'a> {
    /// Connections already made (at start, for the pre-flight).
    pub fn new(
        config: &'a JobConfig,
        source: Conn,
        archive: Option<Conn>,
        shutdown: Shutdown,
    ) -> Servers<'a> {
        Servers {
            config,
            source: Some(source),
            source_now_unix_us: None,
            archive,
            accepts: Accepts::default(),
            spare: Vec::new(),
            spare_archive: Vec::new(),
            shutdown,
        }
    }

    async fn reconnect(&mut self, endpoint: &Endpoint) -> Result<Conn, Halt> {
        let window = Duration::from_secs(self.config.sessions.reconnect_timeout_s.into());
        let lock_wait = self.config.sessions.lock_wait_timeout_s;
        connect_patiently(endpoint, lock_wait, window, &mut self.shutdown).await
    }

    /// The source connection with its session's `NOW()` pinned to `now_unix_us`, reconnecting
    /// when there is none.
    pub async fn source(&mut self, now_unix_us: i64) -> Result<&mut Conn, Halt> {
        if self.source.is_none() {
            let conn = self.reconnect(&self.config.source.endpoint).await?;
            self.source = Some(conn);
            self.source_now_unix_us = None;
        }
        let conn = self.source.as_mut().expect("connected above");
        if self.source_now_unix_us != Some(now_unix_us) {
            db::set_timestamp(conn, now_unix_us).await?;
            self.source_now_unix_us = Some(now_unix_us);
        }
        Ok(conn)
    }

    /// Both connections, for the two-step batch, taken out so both can be used at once; give
    /// them back with [`Servers::put_back`]. Dropping them instead closes them, which makes
    /// each server roll back its open transaction.
    pub async fn take_both(&mut self, now_unix_us: i64) -> Result<(Conn, Conn), Halt> {
        self.source(now_unix_us).await?;
        let archive = self.take_archive().await?;
        let source = self.source.take().expect("connected above");
        Ok((source, archive))
    }

    /// An archive connection of its own for a two-server batch: an idle one, else a new one
    /// (patiently). Give it back with [`Servers::give_back_archive`]; dropping it closes it,
    /// which makes the server roll back its open transaction.
    pub async fn take_archive(&mut self) -> Result<Conn, Halt> {
        if let Some(conn) = self.archive.take().or_else(|| self.spare_archive.pop()) {
            return Ok(conn);
        }
        let endpoint = self
            .config
            .archive
            .endpoint
            .as_ref()
            .expect("the two-step batch runs only for a job with an archive url");
        self.reconnect(endpoint).await
    }

    /// Gives back a connection of [`Servers::take_archive`], idle.
    pub fn give_back_archive(&mut self, conn: Conn) {
        match self.archive {
            None => self.archive = Some(conn),
            Some(_) => self.spare_archive.push(conn),
        }
    }

    /// Gives back the connections of [`Servers::take_both`].
    pub fn put_back(&mut self, source: Conn, archive: Conn) {
        self.source = Some(source);
        self.archive = Some(archive);
    }

    /// A source connection of its own for a batch in flight, its session's `NOW()` pinned to
    /// `now_unix_us`: an idle one, else a new one (patiently). Give it back with
    /// [`Servers::give_back`] once its batch committed; dropping it closes it, which makes the
    /// server roll back its open transaction.
    pub async fn take_source(&mut self, now_unix_us: i64) -> Result<Conn, Halt> {
        let (mut conn, pinned) = match self.spare.pop() {
            Some(spare) => spare,
            None => (
                self.reconnect(&self.config.source.endpoint).await?,
                i64::MIN,
            ),
        };
        if pinned != now_unix_us {
            db::set_timestamp(&mut conn, now_unix_us).await?;
        }
        Ok(conn)
    }

    /// Gives back a connection of [`Servers::take_source`], idle, pinned to `now_unix_us`.
    pub fn give_back(&mut self, conn: Conn, now_unix_us: i64) {
        self.spare.push((conn, now_unix_us));
    }

    /// Closes every idle connection (after an error that may have broken them); the next use
    /// reconnects. Connections taken out stay with their batches.
    pub fn drop_all(&mut self) {
        self.source = None;
        self.source_now_unix_us = None;
        self.archive = None;
        self.spare.clear();
        self.spare_archive.clear();
    }
}
