//! The OpenAPI 3.1 document, generated from the handlers' annotations. A test checks that it
//! lists exactly the routes of the route table, so the document cannot drift from the server.

use crate::api;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tenantry", description = "Multi-tenant workspace server. Every `/v1/...` route is also served as `/t/{slug}/v1/...`."),
    security(("bearer" = [])),
    modifiers(&BearerAuth),
    paths(
        api::ops::healthz, api::ops::readyz, api::ops::metrics, api::ops::openapi,
        api::tenants::create, api::tenants::list, api::tenants::show, api::tenants::update, api::tenants::archive,
        api::tenants::suspend, api::tenants::resume, api::tenants::restore,
        api::keys::create, api::keys::list, api::keys::revoke, api::keys::whoami,
        api::files::list, api::files::put, api::files::get, api::files::head, api::files::remove,
        api::audit::list, api::audit::verify,
    )
)]
struct ApiDoc;

pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_spec_lists_exactly_the_routes_the_server_serves() {
        let spec = serde_json::to_value(spec()).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "put", "post", "delete", "patch", "head"].contains(&method.as_str()) {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let svc_routes = crate::api::route_list();
        let served: BTreeSet<_> =
            svc_routes.iter().map(|e| (e.method.to_string(), e.path.replace("{*", "{"))).collect();
        assert_eq!(documented, served);
        assert_eq!(spec["openapi"], "3.1.0");
    }
}
