//! `tenantry serve`: opens the data dir, the store (SQLite there, or PostgreSQL) and the core
//! service, then serves HTTP until SIGTERM/SIGINT, finishing in-flight requests and closing
//! storage cleanly.

use crate::config::ServeConfig;
use anyhow::Context;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tenantry_core::caller::TenantNaming;
use tenantry_core::secret::KeySecret;
use tenantry_core::service::{ServiceConfig, Tenantry};
use tenantry_core::store::Store;
use tenantry_core::time::SystemClock;
use tenantry_store_postgres::{PgStore, PlacementOptions};
use tenantry_store_sqlite::{OpenOptions, SqliteStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_KEY_FILE: &str = "admin.key";

/// The operator key: from the environment, else from DATA/admin.key, else a new one written
/// there with mode 0600. Returns the key and whether it was just generated.
pub fn operator_key(data: &Path, from_env: Option<&str>) -> anyhow::Result<(String, bool)> {
    if let Some(k) = from_env {
        return Ok((k.to_owned(), false));
    }
    let path = data.join(ADMIN_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => return Ok((k.trim().to_owned(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let key = KeySecret::mint_operator().expose().to_owned();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(key.as_bytes())?;
    f.sync_all()?;
    Ok((key, true))
}

/// The file naming this node (see [`node_id`]).
pub const NODE_ID_FILE: &str = "node.id";

/// This node's name among those sharing a store: read from DATA/node.id, else a new random one
/// written there. It is what a node holds a tenant's NATS publishing by, so a node restarted
/// after a crash takes its own tenants back at once instead of waiting for its leases to end.
pub fn node_id(data: &Path) -> anyhow::Result<String> {
    let path = data.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = format!("node-{:016x}", rand::random::<u64>());
    let mut f = std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(id.as_bytes())?;
    f.sync_all()?;
    Ok(id)
}

/// Creates the data dir readable by its owner only (mode 0700), or narrows an existing one to
/// that: it holds webhook secrets in clear and every tenant's data, and a directory other local
/// users cannot enter keeps every file in it from them, whatever the files' own modes.
pub fn private_data_dir(data: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(data).with_context(|| format!("cannot create data dir {}", data.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(data).with_context(|| format!("cannot stat {}", data.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "data dir {} was open to other users (mode {:o}); narrowed to 0700",
                data.display(),
                mode & 0o777
            );
            std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot narrow the permissions of {}", data.display()))?;
        }
    }
    Ok(())
}

/// A server started by [`start`]: where it listens and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_key: String,
    /// Set when this start generated the operator key (to print it once).
    pub generated_admin_key: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    store: Arc<dyn Store>,
    svc: Arc<Tenantry>,
    flusher: JoinHandle<()>,
    upkeep: JoinHandle<()>,
    directory_follower: JoinHandle<()>,
    activity_sharer: Option<JoinHandle<()>>,
    deliveries: JoinHandle<()>,
    nats: Option<JoinHandle<()>>,
    stop_workers: tokio::sync::watch::Sender<bool>,
}

/// How often metered usage is written to the store: at most this much is lost on a crash.
pub const USAGE_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

impl Running {
    /// Stops accepting, waits for in-flight requests, then closes storage.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.context("server task panicked")??;
        self.flusher.abort();
        self.upkeep.abort();
        self.directory_follower.abort();
        if let Some(sharer) = &self.activity_sharer {
            sharer.abort();
        }
        // An attempt in flight finishes and is recorded; what was not attempted stays queued.
        let _ = self.stop_workers.send(true);
        let _ = (&mut self.deliveries).await;
        if let Some(nats) = self.nats.as_mut() {
            let _ = nats.await;
        }
        // Nothing metered is lost on a clean shutdown.
        self.svc.flush_usage().await.map_err(|e| anyhow::anyhow!("flushing usage: {}", e.message))?;
        self.store.close().await.context("closing storage")?;
        Ok(())
    }

    /// Resolves when the server stops on its own (it should not).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("server task panicked")??;
        Ok(())
    }
}

/// Opens everything and starts serving in the background.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<Running> {
    private_data_dir(&cfg.data)?;
    let (admin_key, generated) = operator_key(&cfg.data, cfg.admin_key.as_deref())?;
    let store: Arc<dyn Store> = match &cfg.database_url {
        Some(url) => Arc::new(
            PgStore::open_with(
                url,
                cfg.database_connections,
                &PlacementOptions {
                    owner_url: cfg.database_owner_url.clone(),
                    max_open_dedicated: cfg.max_open_dedicated,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the PostgreSQL store: {}", e.message))?,
        ),
        None => {
            let opts = OpenOptions {
                synchronous_full: cfg.synchronous_full,
                max_open_dedicated: cfg.max_open_dedicated,
                ..OpenOptions::default()
            };
            let data = cfg.data.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&data, opts))
                .await
                .context("opening storage")?
                .map_err(|e| anyhow::anyhow!("cannot open storage in {}: {}", cfg.data.display(), e.message))?;
            Arc::new(store)
        }
    };
    // Password hashing and large documents' tokenizing share one turn per core but one.
    let offload = tenantry_http::offload::Offload::default();
    let service_config = ServiceConfig {
        tiers: cfg.tiers.clone(),
        naming: TenantNaming { base_domain: cfg.base_domain.clone() },
        max_file_bytes: cfg.max_file_bytes,
        max_memory_value_bytes: cfg.max_memory_value_bytes,
        event_retention_days: cfg.event_retention_days,
        event_relay: cfg.nats.is_some().then(|| tenantry_core::service::NATS_RELAY.to_owned()),
        webhooks: cfg.webhooks.clone(),
        password_work: Arc::new(tenantry_http::offload::BlockingPasswordWork(offload.clone())),
        index_work: Arc::new(tenantry_http::offload::BlockingIndexWork(offload)),
        ..ServiceConfig::default()
    };
    // Registered before the directory is loaded (see tenantry_http::cluster).
    let (follower, directory_changes) = tenantry_http::cluster::DirectoryChanges::new();
    store.add_directory_follower(follower);
    let svc = Tenantry::start(store.clone(), service_config, &admin_key, Arc::new(SystemClock))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start: {}", e.message))?;
    let listener =
        tokio::net::TcpListener::bind(&cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let svc = Arc::new(svc);
    let directory_follower = tenantry_http::cluster::follow_directory(svc.clone(), directory_changes);
    // Several nodes may share a PostgreSQL store: each tells the others what it counted.
    let activity_sharer = cfg.database_url.is_some().then(|| {
        store.add_activity_follower(svc.clone());
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(tenantry_core::service::SHARE_ACTIVITY_EVERY);
            loop {
                tick.tick().await;
                if let Err(e) = svc.share_activity().await {
                    tracing::warn!("could not tell other nodes what this one counted: {}", e.message);
                }
            }
        })
    });
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(tenantry_http::serve(listener, svc.clone(), cfg.http.clone(), async move {
        let _ = rx.await;
    }));
    let flusher = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(USAGE_FLUSH_INTERVAL);
            loop {
                tick.tick().await;
                if let Err(e) = svc.flush_usage().await {
                    tracing::error!("could not flush usage (kept for the next try): {}", e.message);
                }
            }
        })
    };
    let upkeep = {
        let svc = svc.clone();
        let every = cfg.upkeep_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = svc.reclaim_expired_memory().await {
                    tracing::error!("could not reclaim expired memory: {}", e.message);
                }
                if let Err(e) = svc.prune_events().await {
                    tracing::error!("could not prune old events: {}", e.message);
                }
                if let Err(e) = svc.prune_audit().await {
                    tracing::error!("could not prune a tenant's old audit entries: {}", e.message);
                }
                if let Err(e) = svc.flush_sessions().await {
                    tracing::error!("could not record sessions' use or delete ended ones: {}", e.message);
                }
            }
        })
    };
    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let deliveries = tenantry_http::delivery::spawn(svc.clone(), workers_stopped.clone());
    let nats = match &cfg.nats {
        Some(nats) => Some(
            tenantry_nats::spawn(svc.clone(), nats.clone(), node_id(&cfg.data)?, workers_stopped)
                .await
                .map_err(|e| anyhow::anyhow!("cannot publish to NATS: {e}"))?,
        ),
        None => None,
    };
    Ok(Running {
        addr,
        admin_key,
        generated_admin_key: generated,
        shutdown: Some(tx),
        task,
        store,
        svc,
        flusher,
        upkeep,
        directory_follower,
        activity_sharer,
        deliveries,
        nats,
        stop_workers,
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// What `serve` prints after the line saying where it listens, on every start: the addresses to
/// open and where the operator key is, ending with an empty line.
pub fn where_to_go(addr: SocketAddr, data: &Path, key_from_env: bool) -> String {
    // A server on every interface is reached locally through loopback.
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    };
    let base = format!("http://{host}");
    let key_file = data.join(ADMIN_KEY_FILE);
    let key_file = std::path::absolute(&key_file).unwrap_or(key_file);
    let key = match key_from_env {
        true => "from --admin-key or TENANTRY_ADMIN_KEY (not stored)".to_owned(),
        false => format!("in {}", key_file.display()),
    };
    format!(
        "  API          {base}/v1/  (Authorization: Bearer KEY)\n  \
           API docs     {base}/docs  (OpenAPI: {base}/openapi.json)\n  \
           metrics      {base}/metrics\n  \
           health       {base}/healthz, {base}/readyz\n  \
           operator key {key}\n  \
           next         tenantry tenant create acme   (the README's quickstart)\n\n"
    )
}

/// `tenantry serve`: start, print where, serve until a signal, stop cleanly.
pub async fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    let data = cfg.data.clone();
    let from_env = cfg.admin_key.is_some();
    // Where the data is: the data dir, or the database (its host and name, no credentials).
    let stored = match &cfg.database_url {
        Some(url) => format!("PostgreSQL at {}", url.rsplit('@').next().unwrap_or_default()),
        None => format!("data: {}", data.display()),
    };
    let mut running = start(cfg).await?;
    if running.generated_admin_key {
        println!("operator key (shown once; stored in {}): {}", data.join(ADMIN_KEY_FILE).display(), running.admin_key);
    }
    println!("tenantry listening on http://{} ({stored})", running.addr);
    print!("{}", where_to_go(running.addr, &data, from_env));
    let _ = std::io::stdout().flush();
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutdown signal: finishing in-flight requests");
            running.stop().await?;
            tracing::info!("stopped cleanly");
            Ok(())
        }
        res = running.wait() => res,
    }
}
