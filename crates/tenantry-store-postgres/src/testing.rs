//! Throwaway databases on the test cluster (scripts/pg-cluster.sh), one per test so tests run in
//! parallel: a database with an owning role and an app role of its own.

use tokio_postgres::NoTls;

/// Where the test cluster is: a superuser's URL.
pub const CLUSTER_VAR: &str = "TENANTRY_TEST_POSTGRES";

/// Whether a test cluster is configured; says so when not. Under `CI=true` a missing cluster
/// is a failure: a broken install must not pass as a skip.
pub fn cluster_configured() -> bool {
    if std::env::var_os(CLUSTER_VAR).is_some() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{CLUSTER_VAR} is not set under CI=true: .ci/run starts a cluster (scripts/pg-cluster.sh)");
    }
    eprintln!("skipped: {CLUSTER_VAR} is not set (eval \"$(bash scripts/pg-cluster.sh start)\" sets it)");
    false
}

pub struct TestDatabase {
    admin_url: String,
    host: String,
    port: u16,
    pub name: String,
    pub owner_role: String,
    pub app_role: String,
}

impl TestDatabase {
    /// A new database, or `None` (the test is skipped, saying so) when no cluster is configured.
    /// Under `CI=true` a missing cluster is a failure: a broken install must not pass as a skip.
    pub async fn create() -> Option<TestDatabase> {
        if !cluster_configured() {
            return None;
        }
        let admin_url = std::env::var(CLUSTER_VAR).expect("checked");
        Some(TestDatabase::create_on(&admin_url).await)
    }

    /// A new database on the cluster whose superuser's URL is `admin_url`.
    pub async fn create_on(admin_url: &str) -> TestDatabase {
        let admin_url = admin_url.to_owned();
        let config: tokio_postgres::Config = admin_url.parse().expect("the test cluster URL parses");
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[allow(unreachable_patterns)]
            other => panic!("the test cluster is reached over TCP, not {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let suffix: String = (0..10).map(|_| (b'a' + rand::random::<u8>() % 26) as char).collect();
        let db = TestDatabase {
            admin_url,
            host,
            port,
            name: format!("t_{suffix}"),
            owner_role: format!("o_{suffix}"),
            app_role: format!("a_{suffix}"),
        };
        let admin = db.admin().await;
        // One statement each: CREATE DATABASE may not run in the implicit transaction of a batch.
        for sql in [
            // CREATEDB: dedicated tenants' databases are created as the owner.
            format!("CREATE ROLE {} LOGIN CREATEDB", db.owner_role),
            format!("CREATE ROLE {} LOGIN NOBYPASSRLS", db.app_role),
            format!("CREATE DATABASE {} OWNER {}", db.name, db.owner_role),
        ] {
            admin.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
        db
    }

    /// The URL of this database as `role`.
    pub fn url_as(&self, role: &str) -> String {
        format!("postgres://{role}@{}:{}/{}", self.host, self.port, self.name)
    }

    pub fn owner_url(&self) -> String {
        self.url_as(&self.owner_role)
    }

    pub fn app_url(&self) -> String {
        self.url_as(&self.app_role)
    }

    /// A connection as the cluster's superuser, to the cluster's admin database.
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&self.admin_url).await
    }

    /// A connection to this database as `role`.
    pub async fn connect_as(&self, role: &str) -> tokio_postgres::Client {
        connect(&self.url_as(role)).await
    }

    /// The dedicated tenants' databases made beside this one (`<name>_<tenant id>`).
    pub async fn dedicated_databases(&self) -> Vec<String> {
        let admin = self.admin().await;
        let rows = admin
            .query(
                "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
                &[&format!("{}_", self.name)],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// A connection as the cluster's superuser (whom row-level security does not bind) to the
    /// database `name` on this cluster.
    pub async fn superuser_in(&self, name: &str) -> tokio_postgres::Client {
        let mut config: tokio_postgres::Config = self.admin_url.parse().expect("the test cluster URL parses");
        config.dbname(name);
        let (client, connection) = config.connect(NoTls).await.unwrap_or_else(|e| panic!("connect to {name}: {e}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Drops the database, the dedicated databases beside it, and its roles.
    pub async fn drop_all(self) {
        let admin = self.admin().await;
        for name in self.dedicated_databases().await {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            admin.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
        for sql in [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            format!("DROP ROLE IF EXISTS {}", self.owner_role),
            format!("DROP ROLE IF EXISTS {}", self.app_role),
        ] {
            admin.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
