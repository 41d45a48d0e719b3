//! Crash recovery at open: what a crash may have left half done (imports, moves, dedicated databases
//! whose creation never finished) is settled before the store serves.

use crate::error::sql_error;
use crate::store::SqliteStore;
use rusqlite::Connection;
use std::collections::HashSet;
use tenantry_core::ids::TenantId;
use tenantry_core::Result;

fn sweep_imports(conn: &mut Connection) -> Result<u64> {
    let tx = conn.transaction().map_err(sql_error)?;
    let swept = crate::import::sweep_imports_tx(&tx)?;
    tx.commit().map_err(sql_error)?;
    Ok(swept)
}

/// Settles the shared database and every dedicated one, and loads the routes.
pub(crate) fn recover(store: &SqliteStore) -> Result<()> {
    let mut shared = crate::pool::plain(&store.shared.path)?;
    crate::moves::settle_moves(store, &mut shared)?;
    let mut swept = sweep_imports(&mut shared)?;
    let mut named: HashSet<String> = crate::files::named_blobs(&shared)?.into_iter().collect();
    let tenants: HashSet<String> = shared
        .prepare("SELECT id FROM tenants")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sql_error)?;
    let dedicated: Vec<String> = shared
        .prepare("SELECT id FROM tenants WHERE placement = 'dedicated'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sql_error)?;
    for id in &dedicated {
        let tenant = TenantId::parse(id).ok_or_else(|| crate::error::corrupt("tenant id"))?;
        store.routes.set_dedicated(&tenant, true);
        let path = store.dedicated.path_of(&tenant);
        if !path.exists() {
            return Err(tenantry_core::Error::internal(format!(
                "tenant {id} is dedicated but its database {} is missing",
                path.display()
            )));
        }
        let mut conn = crate::pool::plain(&path)?;
        crate::schema::migrate_file(&mut conn, &path)?;
        swept += sweep_imports(&mut conn)?;
        named.extend(crate::files::named_blobs(&conn)?);
        let hooked: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM webhooks)", [], |r| r.get(0)).map_err(sql_error)?;
        if hooked {
            store.routes.set_hooked(&tenant);
        }
    }
    if swept > 0 {
        tracing::warn!(swept, "dropped imports that were interrupted before they committed");
    }
    // A dedicated database no registry row points at was being created when the server stopped
    // (its creation was never answered): nothing refers to it.
    if let Ok(entries) = std::fs::read_dir(store.dedicated.dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".db") else { continue };
            if !dedicated.iter().any(|d| d == id) {
                if let Some(tenant) = TenantId::parse(id) {
                    tracing::warn!(tenant = id, "deleting a dedicated database no tenant points at");
                    store.dedicated.delete_files(&tenant)?;
                }
            }
        }
    }
    // With every move settled and every staged import dropped, a body no database names is left
    // over from a write that never committed (or a delete whose unlink did not happen).
    store.blobs.sweep(&named, &tenants)?;
    Ok(())
}
