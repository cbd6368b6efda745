//! Metadata on PostgreSQL: one table of `(tree, key, value)` bytes, a checked
//! batch as one transaction that first takes a transaction-scoped advisory
//! lock for every key it checks or writes (in one order, so two batches never
//! wait on each other in a cycle), then judges its checks and writes. Batches
//! touching a key one after another, batches on other keys at once — what
//! sled's transactions give, without the false conflicts serializable
//! isolation reports when many writers insert next to each other (which made
//! enrollments of many devices at once give up). The schema is made by
//! embedded migrations applied in a transaction at start, under an advisory
//! lock so replicas starting together apply each once.
//!
//! The [`KvStore`] calls block; the store drives its connection pool on a
//! small runtime of its own, so a call works from any thread.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::IsolationLevel;

use super::{Batch, Hub, KvStore, Notice, Subscription, Tree};
use crate::bridge::Bridge;
use crate::error::{RegistryError, Result};
use std::sync::Arc;

/// The schema, in order; each is applied once, in a transaction.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE kv (
        tree  text  NOT NULL,
        key   bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (tree, key)
    )",
)];

/// Serialization conflicts a batch is retried through before it gives up.
const MAX_RETRIES: u32 = 50;

fn storage(what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(format!("postgres: {what}: {e}"))
}

/// The metadata store on a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    bridge: Bridge,
    /// How to open the connection that listens for other replicas' notes.
    listen: Listen,
    hub: Arc<Hub>,
    listening: std::sync::Once,
    /// Set once the listening connection is listening.
    ready: Arc<tokio::sync::watch::Sender<bool>>,
}

#[derive(Clone)]
struct Listen {
    cfg: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// The channel committed batches' notes are sent on.
const CHANNEL: &str = "algobay_changes";

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// The pairs under `prefix` in key order, at most `limit` of them.
    fn scan(
        &self,
        tree: Tree,
        prefix: &[u8],
        limit: Option<usize>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (pool, prefix) = (self.pool.clone(), prefix.to_vec());
        let limit = limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
        self.run(async move {
            let client = pool.get().await.map_err(|e| storage("connect", e))?;
            let rows = match prefix_end(&prefix) {
                Some(end) => {
                    client
                        .query(
                            &format!("SELECT key, value FROM kv WHERE tree = $1 AND key >= $2 AND key < $3 ORDER BY key{limit}"),
                            &[&tree.name(), &prefix, &end],
                        )
                        .await
                }
                None => {
                    client
                        .query(
                            &format!("SELECT key, value FROM kv WHERE tree = $1 AND key >= $2 ORDER BY key{limit}"),
                            &[&tree.name(), &prefix],
                        )
                        .await
                }
            }
            .map_err(|e| storage("scan", e))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }
    /// Connects to `url` (`postgres://user@host:port/db?sslmode=disable`; the
    /// usual `PG*` variables fill what it leaves out) and brings the schema up
    /// to date. TLS (any `sslmode` but `disable`) trusts the CA certificates in
    /// the PEM file `PGSSLROOTCERT` names.
    pub fn connect(url: &str) -> Result<PgStore> {
        let mut cfg = tokio_postgres::Config::from_str(url)
            .map_err(|e| RegistryError::invalid("meta", format!("not a postgres URL: {e}")))?;
        fill_from_env(&mut cfg);
        let bridge = Bridge::new("postgres")?;
        let manager = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let listen = Listen {
            cfg: cfg.clone(),
            tls: if cfg.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
                None
            } else {
                Some(tls()?)
            },
        };
        let mgr = match &listen.tls {
            None => Manager::from_config(cfg, tokio_postgres::NoTls, manager),
            Some(t) => Manager::from_config(cfg, t.clone(), manager),
        };
        let pool = Pool::builder(mgr)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| storage("pool", e))?;
        let store = PgStore {
            pool,
            bridge,
            listen,
            hub: Arc::new(Hub::default()),
            listening: std::sync::Once::new(),
            ready: Arc::new(tokio::sync::watch::Sender::new(false)),
        };
        store.run(migrate(store.pool.clone()))?;
        Ok(store)
    }

    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.bridge.run(fut)
    }
}

/// What libpq would take from the environment when the URL leaves it out.
fn fill_from_env(cfg: &mut tokio_postgres::Config) {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if cfg.get_hosts().is_empty() {
        cfg.host(var("PGHOST").as_deref().unwrap_or("localhost"));
    }
    if cfg.get_ports().is_empty() {
        if let Some(p) = var("PGPORT").and_then(|p| p.parse().ok()) {
            cfg.port(p);
        }
    }
    if cfg.get_user().is_none() {
        if let Some(u) = var("PGUSER") {
            cfg.user(&u);
        }
    }
    if cfg.get_password().is_none() {
        if let Some(p) = var("PGPASSWORD") {
            cfg.password(p);
        }
    }
    if cfg.get_dbname().is_none() {
        if let Some(d) = var("PGDATABASE") {
            cfg.dbname(&d);
        }
    }
}

fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let path = std::env::var("PGSSLROOTCERT").map_err(|_| {
        RegistryError::invalid(
            "meta",
            "TLS to postgres needs the server's CA: set PGSSLROOTCERT to its PEM file (or sslmode=disable)",
        )
    })?;
    let pem = std::fs::read(&path).map_err(|e| storage(&format!("PGSSLROOTCERT {path}"), e))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&pem)? {
        roots
            .add(cert)
            .map_err(|e| storage(&format!("PGSSLROOTCERT {path}"), e))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| storage("tls", e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| storage("PGSSLROOTCERT", e))
}

/// Applies the migrations not applied yet, each in its own transaction.
async fn migrate(pool: Pool) -> Result<()> {
    let mut client = pool.get().await.map_err(|e| storage("connect", e))?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| storage("migrate", e))?;
    // One replica at a time; released with the transaction.
    tx.execute("SELECT pg_advisory_xact_lock(7215532011)", &[])
        .await
        .map_err(|e| storage("migrate", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS algobay_migrations (
            version    integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(|e| storage("migrate", e))?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM algobay_migrations", &[])
        .await
        .map_err(|e| storage("migrate", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| storage(&format!("migration {version}"), e))?;
        tx.execute(
            "INSERT INTO algobay_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(|e| storage(&format!("migration {version}"), e))?;
        tracing::info!(version, "postgres schema migrated");
    }
    tx.commit().await.map_err(|e| storage("migrate", e))
}

/// The smallest key above every key that starts with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Whether a failed statement is a conflict with another transaction (retry).
fn conflict(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    )
}

/// The advisory lock that guards one key (a hash: two keys sharing one only
/// wait for each other, never more). It is negative, so it never meets the
/// migrations' lock.
fn lock_id(tree: Tree, key: &[u8]) -> i64 {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(tree.name().as_bytes());
    h.update([0]);
    h.update(key);
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    ((u64::from_be_bytes(b) >> 1) | (1 << 63)) as i64
}

/// One attempt at a batch: `Ok(None)` when it conflicted and must be retried.
async fn attempt(pool: &Pool, batch: &Batch) -> Result<Option<bool>> {
    let mut client = pool.get().await.map_err(|e| storage("connect", e))?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(|e| storage("begin", e))?;
    macro_rules! step {
        ($e:expr, $what:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) if conflict(&e) => return Ok(None),
                Err(e) => return Err(storage($what, e)),
            }
        };
    }
    // One lock per key, taken in the order of their ids.
    let mut locks: Vec<i64> = batch
        .checks
        .iter()
        .map(|(t, k, _)| lock_id(*t, k))
        .chain(batch.writes.iter().map(|(t, k, _)| lock_id(*t, k)))
        .collect();
    locks.sort_unstable();
    locks.dedup();
    if !locks.is_empty() {
        step!(
            tx.execute(
                "SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest($1::bigint[]) AS k ORDER BY k) AS ordered",
                &[&locks],
            )
            .await,
            "lock"
        );
    }
    for (tree, key, expected) in &batch.checks {
        let row = step!(
            tx.query_opt(
                "SELECT value FROM kv WHERE tree = $1 AND key = $2",
                &[&tree.name(), key],
            )
            .await,
            "check"
        );
        let have: Option<Vec<u8>> = row.map(|r| r.get(0));
        if have.as_ref() != expected.as_ref() {
            // Nothing written: the transaction rolls back when dropped.
            return Ok(Some(false));
        }
    }
    for (tree, key, value) in &batch.writes {
        match value {
            Some(v) => step!(
                tx.execute(
                    "INSERT INTO kv (tree, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                    &[&tree.name(), key, v],
                )
                .await,
                "write"
            ),
            None => step!(
                tx.execute(
                    "DELETE FROM kv WHERE tree = $1 AND key = $2",
                    &[&tree.name(), key],
                )
                .await,
                "delete"
            ),
        };
    }
    // Delivered to every listener when (and only if) the transaction commits.
    for n in &batch.notes {
        step!(
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, n]).await,
            "notify"
        );
    }
    step!(tx.commit().await, "commit");
    Ok(Some(true))
}

/// Listens on [`CHANNEL`] for as long as the store lives, connecting again
/// after a loss (and telling subscribers that notes may have been missed).
async fn listen(l: Listen, hub: Arc<Hub>, ready: Arc<tokio::sync::watch::Sender<bool>>) {
    let mut first = true;
    loop {
        let r = match &l.tls {
            None => listen_once(&l.cfg, tokio_postgres::NoTls, &hub, first, &ready).await,
            Some(t) => listen_once(&l.cfg, t.clone(), &hub, first, &ready).await,
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "postgres: listening for other replicas' changes; connecting again");
        }
        first = false;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn listen_once<T>(
    cfg: &tokio_postgres::Config,
    tls: T,
    hub: &Hub,
    first: bool,
    ready: &tokio::sync::watch::Sender<bool>,
) -> std::result::Result<(), tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    use futures::StreamExt;
    let (client, mut conn) = cfg.connect(tls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(Ok(n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    ready.send_replace(true);
    if !first {
        hub.send(Notice::Missed);
    }
    let r = loop {
        match rx.recv().await {
            Some(Ok(p)) => hub.send(Notice::Note(p)),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    driver.abort();
    r
}

impl KvStore for PgStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (pool, key) = (self.pool.clone(), key.to_vec());
        self.run(async move {
            let client = pool.get().await.map_err(|e| storage("connect", e))?;
            let row = client
                .query_opt(
                    "SELECT value FROM kv WHERE tree = $1 AND key = $2",
                    &[&tree.name(), &key],
                )
                .await
                .map_err(|e| storage("get", e))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan(tree, prefix, None)
    }

    fn scan_prefix_first(
        &self,
        tree: Tree,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan(tree, prefix, Some(limit))
    }

    fn commit(&self, batch: Batch) -> Result<bool> {
        let pool = self.pool.clone();
        self.run(async move {
            for n in 0..MAX_RETRIES {
                if let Some(done) = attempt(&pool, &batch).await? {
                    return Ok(done);
                }
                // Another writer won this round; judge the checks again.
                tokio::time::sleep(Duration::from_millis(1 + (n as u64 * 3) % 17)).await;
            }
            Err(RegistryError::Storage(format!(
                "postgres: a batch conflicted with other writers {MAX_RETRIES} times in a row"
            )))
        })
    }

    fn subscribe(&self) -> Result<Subscription> {
        let rx = self.hub.subscribe();
        self.listening.call_once(|| {
            self.bridge.spawn(listen(
                self.listen.clone(),
                self.hub.clone(),
                self.ready.clone(),
            ));
        });
        // Notes committed once this returns are heard.
        let mut ready = self.ready.subscribe();
        self.run(async move {
            tokio::time::timeout(Duration::from_secs(30), ready.wait_for(|r| *r))
                .await
                .map(|_| ())
                .map_err(|_| storage("listen", "not listening after 30 s"))
        })?;
        Ok(rx)
    }
}

/// A throwaway PostgreSQL server for tests: `initdb` and `pg_ctl` (as the
/// `postgres` user when run as root), on 127.0.0.1 and a free port, stopped
/// (fast shutdown) when dropped.
#[cfg(any(test, feature = "testsuite"))]
pub mod throwaway {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    #[derive(Debug)]
    pub struct Postgres {
        dir: tempfile::TempDir,
        pub port: u16,
    }

    fn bin(name: &str) -> PathBuf {
        for v in ["17", "16", "15"] {
            let p = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin/{name}"));
            if p.exists() {
                return p;
            }
        }
        panic!("PostgreSQL's {name} is not installed (scripts/setup.sh installs postgresql-15)");
    }

    /// PostgreSQL will not run as root: as root, the command runs as `postgres`.
    fn as_postgres(cmd: &Path) -> Command {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(cmd);
            c
        } else {
            Command::new(cmd)
        }
    }

    impl Postgres {
        pub fn start() -> Postgres {
            let dir = tempfile::Builder::new()
                .prefix("algobay-pg")
                .tempdir()
                .expect("temp dir");
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
            let data = dir.path().join("data");
            let out = as_postgres(&bin("initdb"))
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data)
                .output()
                .expect("initdb runs");
            assert!(
                out.status.success(),
                "initdb: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                dir.path().display()
            );
            let out = as_postgres(&bin("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-o", &opts, "-l"])
                .arg(dir.path().join("log"))
                .args(["-w", "start"])
                .output()
                .expect("pg_ctl runs");
            assert!(
                out.status.success(),
                "pg_ctl start: {} {}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
            );
            Postgres { dir, port }
        }

        /// A new, empty database on the server, and its URL.
        pub fn database(&self, name: &str) -> String {
            let out = as_postgres(&bin("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-c",
                ])
                .arg(format!("CREATE DATABASE {name}"))
                .output()
                .expect("psql runs");
            assert!(
                out.status.success(),
                "create database: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            format!(
                "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
                self.port
            )
        }
    }

    impl Drop for Postgres {
        fn drop(&mut self) {
            let pidfile = self.dir.path().join("data/postmaster.pid");
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
            {
                let _ = Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .status();
                for _ in 0..100 {
                    if !pidfile.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_prefix_is_the_next_key_past_it() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
