//! The API routes, one module per resource. [`routes`] builds the router and, beside it, the
//! [`RouteTable`]: every (method, path) with its audit action, which the OpenAPI test checks
//! against the spec so the two cannot drift.

pub mod admin;
pub mod audit;
pub mod bundles;
pub mod docs;
pub mod events;
pub mod files;
pub mod keys;
pub mod memory;
pub mod ops;
pub mod people;
pub mod search;
pub mod tenants;
pub mod usage;
pub mod webhooks;

use crate::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{delete, get, head, patch, post, put, MethodRouter};
use axum::Router;
use tenantry_core::service::actions;

#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub method: Method,
    pub path: &'static str,
    pub action: &'static str,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<RouteEntry>,
}

impl RouteTable {
    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    /// The audit action of a route, for refusals of it.
    pub fn action(&self, method: &Method, route: Option<&str>) -> &'static str {
        route
            .and_then(|r| self.entries.iter().find(|e| e.path == r && e.method == method))
            .map_or(actions::REQUEST, |e| e.action)
    }
}

struct Builder {
    router: Router<AppState>,
    table: RouteTable,
}

impl Builder {
    fn add(
        mut self,
        method: Method,
        path: &'static str,
        action: &'static str,
        handler: MethodRouter<AppState>,
    ) -> Self {
        self.router = self.router.route(path, handler);
        self.table.entries.push(RouteEntry { method, path, action });
        self
    }
}

/// Every route, as the route table records it (for the OpenAPI drift test).
pub fn route_list() -> Vec<RouteEntry> {
    routes().1.entries
}

/// The router and its table.
pub fn routes() -> (Router<AppState>, RouteTable) {
    use actions::*;
    // Bodies are read by `edge::read_body` with each route's own limit; axum's default limit
    // (2 MiB) is lifted so it cannot cut in first.
    let unlimited = DefaultBodyLimit::disable();
    let b = Builder { router: Router::new(), table: RouteTable::default() }
        .add(Method::GET, "/healthz", REQUEST, get(ops::healthz))
        .add(Method::GET, "/readyz", REQUEST, get(ops::readyz))
        .add(Method::GET, "/metrics", REQUEST, get(ops::metrics))
        .add(Method::GET, "/openapi.json", REQUEST, get(ops::openapi))
        .add(Method::GET, "/docs", REQUEST, get(docs::page))
        .add(Method::GET, "/docs/{asset}", REQUEST, get(docs::asset))
        .add(Method::GET, "/admin", REQUEST, get(admin::page))
        .add(Method::GET, "/admin/", REQUEST, get(admin::page_folder))
        .add(Method::GET, "/admin/{*page}", REQUEST, get(admin::page_at))
        .add(Method::POST, "/v1/tenants", TENANT_CREATE, post(tenants::create))
        .add(Method::GET, "/v1/tenants", TENANT_READ, get(tenants::list))
        .add(Method::GET, "/v1/tenants/{slug}", TENANT_READ, get(tenants::show))
        .add(Method::PATCH, "/v1/tenants/{slug}", TENANT_UPDATE, patch(tenants::update))
        .add(Method::DELETE, "/v1/tenants/{slug}", TENANT_ARCHIVE, delete(tenants::archive))
        .add(Method::POST, "/v1/tenants/{slug}/suspend", TENANT_SUSPEND, post(tenants::suspend))
        .add(Method::POST, "/v1/tenants/{slug}/resume", TENANT_RESUME, post(tenants::resume))
        .add(Method::POST, "/v1/tenants/{slug}/restore", TENANT_RESTORE, post(tenants::restore))
        .add(Method::POST, "/v1/keys", KEY_CREATE, post(keys::create))
        .add(Method::GET, "/v1/keys", KEY_READ, get(keys::list))
        .add(Method::DELETE, "/v1/keys/{id}", KEY_REVOKE, delete(keys::revoke))
        .add(Method::GET, "/v1/whoami", KEY_READ, get(keys::whoami))
        .add(Method::POST, "/v1/users", USER_CREATE, post(people::create_user))
        .add(Method::GET, "/v1/users", USER_READ, get(people::list_users))
        .add(Method::GET, "/v1/users/{id}", USER_READ, get(people::get_user))
        .add(Method::PATCH, "/v1/users/{id}", USER_UPDATE, patch(people::update_user))
        .add(Method::POST, "/v1/members", MEMBER_ADD, post(people::add_member))
        .add(Method::GET, "/v1/members", MEMBER_READ, get(people::list_members))
        .add(Method::PATCH, "/v1/members/{user_id}", MEMBER_UPDATE, patch(people::update_member))
        .add(Method::DELETE, "/v1/members/{user_id}", MEMBER_REMOVE, delete(people::remove_member))
        .add(Method::DELETE, "/v1/invitations/{id}", MEMBER_WITHDRAW, delete(people::withdraw_invitation))
        .add(Method::POST, "/v1/auth/login", AUTH_LOGIN, post(people::login))
        .add(Method::POST, "/v1/auth/accept", AUTH_ACCEPT, post(people::accept))
        .add(Method::POST, "/v1/auth/logout", AUTH_LOGOUT, post(people::logout))
        .add(Method::GET, "/v1/auth/session", AUTH_SESSION, get(people::session))
        .add(Method::GET, "/v1/auth/tenants", AUTH_SESSION, get(people::switchable_tenants))
        .add(Method::GET, "/v1/files", FILE_READ, get(files::list))
        .add(Method::PUT, "/v1/files/{*path}", FILE_WRITE, put(files::put))
        .add(Method::GET, "/v1/files/{*path}", FILE_READ, get(files::get))
        .add(Method::HEAD, "/v1/files/{*path}", FILE_READ, head(files::head))
        .add(Method::DELETE, "/v1/files/{*path}", FILE_DELETE, delete(files::remove))
        .add(Method::GET, "/v1/tenants/{slug}/usage", TENANT_READ, get(usage::tenant))
        .add(Method::GET, "/v1/tenants/{slug}/export", TENANT_EXPORT, get(bundles::export))
        .add(Method::POST, "/v1/tenants/{slug}/import", TENANT_IMPORT, post(bundles::import))
        .add(Method::POST, "/v1/tenants/{slug}/move", TENANT_MOVE, post(tenants::move_tenant))
        .add(Method::GET, "/v1/tenants/{slug}/move", TENANT_READ, get(tenants::move_status))
        .add(Method::GET, "/v1/usage", USAGE_READ, get(usage::own))
        .add(Method::GET, "/v1/audit", AUDIT_READ, get(audit::list))
        .add(Method::GET, "/v1/audit/verify", AUDIT_READ, get(audit::verify))
        .add(Method::PUT, "/v1/memory/{namespace}/{*key}", MEMORY_SET, put(memory::set))
        .add(Method::GET, "/v1/memory/{namespace}/{*key}", MEMORY_READ, get(memory::get))
        .add(Method::DELETE, "/v1/memory/{namespace}/{*key}", MEMORY_DELETE, delete(memory::remove))
        .add(Method::GET, "/v1/memory/{namespace}", MEMORY_READ, get(memory::list))
        .add(Method::GET, "/v1/search", SEARCH, get(search::search))
        .add(Method::GET, "/v1/events", EVENTS_READ, get(events::list))
        .add(Method::POST, "/v1/webhooks", WEBHOOK_CREATE, post(webhooks::create))
        .add(Method::GET, "/v1/webhooks", WEBHOOK_READ, get(webhooks::list))
        .add(Method::GET, "/v1/webhooks/{id}", WEBHOOK_READ, get(webhooks::show))
        .add(Method::PATCH, "/v1/webhooks/{id}", WEBHOOK_UPDATE, patch(webhooks::update))
        .add(Method::DELETE, "/v1/webhooks/{id}", WEBHOOK_DELETE, delete(webhooks::remove))
        .add(Method::GET, "/v1/webhooks/{id}/deliveries", WEBHOOK_READ, get(webhooks::deliveries));
    (b.router.layer(unlimited), b.table)
}
