//! Where each tenant's rows live (API.md §9): a `shared` tenant's in the database the node was
//! given, a `dedicated` tenant's in a database of its own on the same server,
//! `<database>_t_<tenant id>`, migrated to the same schema with the same row-level security.
//! The registry (`tenants`, `tenant_domains`) stays in the shared database for every tenant; a
//! dedicated database holds everything else of its tenant, a copy of its `tenants` row included.
//!
//! [`Places`] routes a tenant to its database: the set of dedicated tenants comes from the
//! registry (loaded with the directory, and again on each of its changes), and their pools are
//! opened on first use and kept in a bounded cache, so any number of dedicated tenants run with a
//! bounded number of connections. Dedicated databases are created and dropped as the role that
//! owns the tables (`[storage] owner_url`), which needs `CREATEDB`.

use crate::error::{describe, pg_error};
use crate::{PgDatabase, Target};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use tenantry_core::ids::TenantId;
use tenantry_core::model::Placement;
use tenantry_core::{Error, Result};

/// How many idle dedicated databases one round of cross-tenant upkeep visits (`for_upkeep`).
const UPKEEP_WINDOW: usize = 4;

/// Longest database name PostgreSQL keeps whole (longer ones are cut, and could collide).
const MAX_NAME: usize = 63;

pub(crate) struct Places {
    shared: PgDatabase,
    /// The node's own target (its role, its TLS), pointed at a dedicated database to open it.
    app: Target,
    /// The owner's target, to create, migrate and drop dedicated databases (`None`: not given).
    owner: Option<Target>,
    /// The shared database's name, which dedicated databases' names begin with.
    base_name: String,
    /// The role the node connects as, granted rows in the databases it creates.
    app_role: String,
    dedicated: RwLock<HashSet<TenantId>>,
    open: Mutex<OpenPools>,
    /// Per purpose of upkeep, where its next window starts among the idle dedicated tenants, and
    /// when it last visited one.
    upkeep_next: Mutex<HashMap<&'static str, (usize, Option<std::time::Instant>)>>,
    /// Tenants whose rows were not where this node routed them (`mark_stale`).
    stale: Mutex<HashSet<TenantId>>,
    /// Connections each dedicated tenant's pool opens at most.
    per_tenant: usize,
}

/// Dedicated tenants' pools, the least recently used closed past `max`.
struct OpenPools {
    pools: HashMap<TenantId, (PgDatabase, u64)>,
    clock: u64,
    max: usize,
}

/// The options a node gives for dedicated placement.
#[derive(Debug, Clone, Default)]
pub struct PlacementOptions {
    /// The URL of the role that owns the tables (with `CREATEDB`): dedicated tenants are possible
    /// only with it.
    pub owner_url: Option<String>,
    /// Dedicated tenants' pools open at once at most (at least 1).
    pub max_open_dedicated: usize,
}

impl Places {
    pub(crate) async fn new(shared: PgDatabase, app: Target, options: &PlacementOptions) -> Result<Places> {
        let owner = options.owner_url.as_deref().map(Target::parse).transpose()?;
        let base_name = database_name(&app.config);
        let app_role: String = {
            let conn = shared.client().await?;
            conn.query_one("SELECT current_user::text", &[]).await.map_err(pg_error)?.get(0)
        };
        let per_tenant = (shared.max_size() / 4).clamp(2, 8);
        Ok(Places {
            shared,
            app,
            owner,
            base_name,
            app_role,
            dedicated: RwLock::new(HashSet::new()),
            open: Mutex::new(OpenPools { pools: HashMap::new(), clock: 0, max: options.max_open_dedicated.max(1) }),
            upkeep_next: Mutex::new(HashMap::new()),
            stale: Mutex::new(HashSet::new()),
            per_tenant,
        })
    }

    pub(crate) fn shared(&self) -> &PgDatabase {
        &self.shared
    }

    /// A connection as the owner to the shared database, or to `tenant`'s own.
    pub(crate) async fn owner_client(&self, tenant: Option<&TenantId>) -> Result<tokio_postgres::Client> {
        let owner = self.owner()?;
        match tenant {
            None => connect(owner).await,
            Some(tenant) => connect(&self.target_of(owner, tenant)?).await,
        }
    }

    /// The lock that keeps one creation or move of `tenant` at a time in the whole cluster (a
    /// session lock of the owner on the shared database): the connection holding it, or `None`
    /// when another holds it. Dropping the connection releases it, and so does a node that stops.
    pub(crate) async fn placement_lock(&self, tenant: &TenantId) -> Result<Option<tokio_postgres::Client>> {
        let client = self.owner_client(None).await?;
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock(hashtext('tenantry.placement.' || $1::text))", &[&tenant.as_str()])
            .await
            .map_err(pg_error)?
            .get(0);
        Ok(locked.then_some(client))
    }

    /// The names of the databases named as dedicated ones beside the shared one.
    pub(crate) async fn dedicated_database_names(&self, client: &tokio_postgres::Client) -> Result<Vec<String>> {
        let prefix = format!("{}_{}", self.base_name, TenantId::PREFIX);
        let rows = client
            .query("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)", &[&prefix])
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The tenant a dedicated database is named for.
    pub(crate) fn tenant_of_database(&self, name: &str) -> Option<TenantId> {
        TenantId::parse(name.strip_prefix(&self.base_name)?.strip_prefix('_')?)
    }

    /// A pool to `tenant`'s own database that routing does not know of (a move's target).
    pub(crate) async fn open_unrouted(&self, tenant: &TenantId) -> Result<PgDatabase> {
        PgDatabase::connect_quietly(self.target_of(&self.app, tenant)?, self.per_tenant).await
    }

    /// Where the registry places `tenant` now, read from the shared database (and routed so).
    pub(crate) async fn registered_placement(&self, tenant: &TenantId) -> Result<Placement> {
        let conn = self.shared.client().await?;
        let rows =
            crate::read_once(&conn, tenant, "SELECT placement FROM tenants WHERE id = $1", &[&tenant.as_str()]).await?;
        let placement = rows
            .first()
            .and_then(|r| Placement::parse(r.get::<_, &str>(0)))
            .ok_or_else(|| Error::not_found(format!("tenant {tenant} is not registered")))?;
        self.set_placement(tenant, Some(placement == Placement::Dedicated));
        Ok(placement)
    }

    /// Notes that `tenant`'s rows were not where this node routed it (another node moved it):
    /// the feed re-reads its directory entry, and so its route, within a second.
    pub(crate) fn mark_stale(&self, tenant: &TenantId) {
        self.stale.lock().unwrap_or_else(|e| e.into_inner()).insert(tenant.clone());
    }

    /// The tenants marked stale since the last call.
    pub(crate) fn take_stale(&self) -> Vec<TenantId> {
        self.stale.lock().unwrap_or_else(|e| e.into_inner()).drain().collect()
    }

    /// Closes every pool (connections in use end when given back).
    pub(crate) fn close(&self) {
        self.shared.close();
        for (db, _) in self.open.lock().unwrap_or_else(|e| e.into_inner()).pools.values() {
            db.close();
        }
    }

    pub(crate) fn is_dedicated(&self, tenant: &TenantId) -> bool {
        self.dedicated.read().unwrap_or_else(|e| e.into_inner()).contains(tenant)
    }

    /// Records where the registry places `tenant` (`None`: it is gone); a tenant no longer
    /// dedicated here has its pool closed.
    pub(crate) fn set_placement(&self, tenant: &TenantId, dedicated: Option<bool>) {
        let now = dedicated == Some(true);
        let was = {
            let mut set = self.dedicated.write().unwrap_or_else(|e| e.into_inner());
            if now {
                !set.insert(tenant.clone())
            } else {
                set.remove(tenant)
            }
        };
        if was && !now {
            self.open.lock().unwrap_or_else(|e| e.into_inner()).pools.remove(tenant);
        }
    }

    /// Replaces the whole set of dedicated tenants (the directory loaded whole).
    pub(crate) fn set_all_dedicated(&self, tenants: impl IntoIterator<Item = TenantId>) {
        let set: HashSet<TenantId> = tenants.into_iter().collect();
        self.open.lock().unwrap_or_else(|e| e.into_inner()).pools.retain(|t, _| set.contains(t));
        *self.dedicated.write().unwrap_or_else(|e| e.into_inner()) = set;
    }

    /// The dedicated tenants, sorted.
    pub(crate) fn dedicated_tenants(&self) -> Vec<TenantId> {
        let mut all: Vec<TenantId> = self.dedicated.read().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        all.sort();
        all
    }

    /// The database holding `tenant`'s rows.
    pub(crate) async fn db_of(&self, tenant: &TenantId) -> Result<PgDatabase> {
        if !self.is_dedicated(tenant) {
            return Ok(self.shared.clone());
        }
        if let Some(db) = self.open.lock().unwrap_or_else(|e| e.into_inner()).touch(tenant) {
            return Ok(db);
        }
        let db = PgDatabase::connect_quietly(self.target_of(&self.app, tenant)?, self.per_tenant).await?;
        Ok(self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(tenant, db))
    }

    /// The databases cross-tenant upkeep visits in one round (due deliveries, expired memory,
    /// old events, abandoned imports): the shared one first (`None`), then every dedicated
    /// database whose pool is open (its tenant busy here lately), then the next [`UPKEEP_WINDOW`]
    /// of the others, round-robin, on connections of their own that do not displace the open
    /// pools, at most once a second for each `purpose` (the delivery worker asks many times a
    /// second). So upkeep costs a bounded number of connections however many dedicated tenants
    /// there are, and each idle dedicated database is visited at least every `idle ÷ 4` seconds
    /// (or rounds, when they are further apart).
    pub(crate) async fn for_upkeep(&self, purpose: &'static str) -> Vec<(Option<TenantId>, Result<PgDatabase>)> {
        let window = UPKEEP_WINDOW;
        let mut visits = vec![(None, Ok(self.shared.clone()))];
        let open: Vec<(TenantId, PgDatabase)> = {
            let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            open.pools.iter().map(|(t, (db, _))| (t.clone(), db.clone())).collect()
        };
        let idle: Vec<TenantId> =
            self.dedicated_tenants().into_iter().filter(|t| !open.iter().any(|(o, _)| o == t)).collect();
        visits.extend(open.into_iter().map(|(t, db)| (Some(t), Ok(db))));
        let start = match idle.is_empty() {
            true => None,
            false => {
                let mut cursors = self.upkeep_next.lock().unwrap_or_else(|e| e.into_inner());
                let now = std::time::Instant::now();
                let (next, last) = cursors.entry(purpose).or_insert((0, None));
                match last {
                    Some(at) if now.duration_since(*at) < std::time::Duration::from_secs(1) => None,
                    _ => {
                        let start = *next % idle.len();
                        *next = start + window.min(idle.len());
                        *last = Some(now);
                        Some(start)
                    }
                }
            }
        };
        if let Some(start) = start {
            for i in 0..window.min(idle.len()) {
                let tenant = idle[(start + i) % idle.len()].clone();
                let db = match self.target_of(&self.app, &tenant) {
                    Ok(target) => PgDatabase::connect_quietly(target, 1).await,
                    Err(e) => Err(e),
                };
                visits.push((Some(tenant), db));
            }
        }
        visits
    }

    /// `tenant`'s dedicated database's name.
    pub(crate) fn name_of(&self, tenant: &TenantId) -> Result<String> {
        let name = format!("{}_{}", self.base_name, crate::tenant_literal(tenant)?);
        if name.len() > MAX_NAME {
            return Err(Error::invalid_request(format!(
                "dedicated placement needs a shared database name of at most {} bytes ({:?} is {})",
                MAX_NAME - 1 - tenant.as_str().len(),
                self.base_name,
                self.base_name.len()
            )));
        }
        Ok(name)
    }

    fn target_of(&self, base: &Target, tenant: &TenantId) -> Result<Target> {
        let mut target = base.clone();
        target.config.dbname(self.name_of(tenant)?);
        Ok(target)
    }

    /// Whether the owner's URL was given (dedicated databases can be created and dropped).
    pub(crate) fn may_create(&self) -> bool {
        self.owner.is_some()
    }

    fn owner(&self) -> Result<&Target> {
        self.owner.as_ref().ok_or_else(|| {
            Error::invalid_request(
                "dedicated placement on PostgreSQL needs the owning role's URL: set [storage] owner_url (or \
                 TENANTRY_DATABASE_OWNER_URL) to a role with CREATEDB that owns the tables",
            )
        })
    }

    /// Creates `tenant`'s database and migrates it, as the owner. A database of that name left by
    /// a creation that did not finish is taken as it is if it holds no tenant, else refused.
    pub(crate) async fn create(&self, tenant: &TenantId) -> Result<()> {
        let owner = self.owner()?;
        let name = self.name_of(tenant)?;
        let admin = connect(owner).await?;
        if !database_exists(&admin, &name).await? {
            // With the shared database's encoding and collation: a move compares the two by
            // rows in key order, which must sort alike.
            let like = admin
                .query_one(
                    "SELECT pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text
                     FROM pg_database WHERE datname = current_database()",
                    &[],
                )
                .await
                .map_err(pg_error)?;
            let literal = |i: usize| format!("'{}'", like.get::<_, String>(i).replace('\'', "''"));
            let create = format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
                quote(&name),
                literal(0),
                literal(1),
                literal(2)
            );
            admin.batch_execute(&create).await.map_err(|e| {
                Error::internal(format!("cannot create the dedicated database {name}: {}", describe(&e)))
            })?;
        }
        let mut client = connect(&self.target_of(owner, tenant)?).await?;
        crate::schema::migrate(&mut client, &self.app_role).await?;
        let tenants: i64 =
            client.query_one("SELECT count(*) FROM tenantry_directory_tenants()", &[]).await.map_err(pg_error)?.get(0);
        if tenants > 0 {
            return Err(Error::internal(format!("the dedicated database {name} exists already and holds a tenant")));
        }
        Ok(())
    }

    /// Drops `tenant`'s database, after closing every connection to it (this node's and other
    /// nodes'): as the owner, it stops accepting connections; as the server's role (which may
    /// end its own role's sessions, where the owner may not), the open ones are ended; then the
    /// owner drops it, and the tenant is routed away from it (not before: a drop that fails
    /// leaves the route as it was).
    pub(crate) async fn drop_database(&self, tenant: &TenantId) -> Result<()> {
        let owner = self.owner()?;
        let name = self.name_of(tenant)?;
        let admin = connect(owner).await?;
        let failed = |e: tokio_postgres::Error| {
            Error::internal(format!("cannot drop the dedicated database {name}: {}", describe(&e)))
        };
        if !database_exists(&admin, &name).await? {
            self.set_placement(tenant, None);
            return Ok(());
        }
        admin
            .batch_execute(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", quote(&name)))
            .await
            .map_err(failed)?;
        let app = self.shared.client().await?;
        app.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND usename = current_user",
            &[&name],
        )
        .await
        .map_err(pg_error)?;
        // A session ends a moment after it is told to: wait for it (at most ten seconds).
        let mut tries = 0;
        loop {
            match admin.batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote(&name))).await {
                Ok(()) => {
                    self.set_placement(tenant, None);
                    return Ok(());
                }
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(failed(e)),
            }
        }
    }
}

impl OpenPools {
    fn touch(&mut self, tenant: &TenantId) -> Option<PgDatabase> {
        self.clock += 1;
        let clock = self.clock;
        self.pools.get_mut(tenant).map(|(db, used)| {
            *used = clock;
            db.clone()
        })
    }

    /// Keeps `db` as `tenant`'s pool unless another task opened one meanwhile (that one is kept),
    /// closing the least recently used past the bound.
    fn insert(&mut self, tenant: &TenantId, db: PgDatabase) -> PgDatabase {
        if let Some(open) = self.touch(tenant) {
            return open;
        }
        while self.pools.len() >= self.max {
            let Some(oldest) = self.pools.iter().min_by_key(|(_, (_, used))| *used).map(|(t, _)| t.clone()) else {
                break;
            };
            self.pools.remove(&oldest);
        }
        self.clock += 1;
        self.pools.insert(tenant.clone(), (db.clone(), self.clock));
        db
    }
}

async fn database_exists(client: &tokio_postgres::Client, name: &str) -> Result<bool> {
    let row = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await.map_err(pg_error)?;
    Ok(row.is_some())
}

/// The database a configuration names (libpq's default: the user's name).
fn database_name(config: &tokio_postgres::Config) -> String {
    config.get_dbname().or(config.get_user()).unwrap_or("postgres").to_owned()
}

/// `name` as a quoted identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn connect(target: &Target) -> Result<tokio_postgres::Client> {
    target.connect().await.map_err(|e| Error::internal(format!("cannot connect as the owning role: {}", describe(&e))))
}

/// Migrates every dedicated database the registry at `owner` names (as `tenantry db migrate` does
/// the shared one), returning how many there were.
pub async fn migrate_dedicated(owner: &Target, app_role: &str) -> Result<usize> {
    let registry = connect(owner).await?;
    let base_name = database_name(&owner.config);
    let rows = registry
        .query("SELECT id FROM tenantry_directory_tenants() WHERE placement = 'dedicated' ORDER BY id", &[])
        .await
        .map_err(pg_error)?;
    for row in &rows {
        let id: String = row.get(0);
        let mut target = owner.clone();
        target.config.dbname(format!("{base_name}_{id}"));
        let mut client = connect(&target).await?;
        crate::schema::migrate(&mut client, app_role).await?;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_identifiers() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote("tenantry_t_abc"), "\"tenantry_t_abc\"");
    }
}
