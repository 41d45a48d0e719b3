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
        // A signed-in person (API.md §11): the cookie `POST /v1/auth/login` sets.
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::new("tenantry_session"),
            )),
        );
    }
}

/// The error answers every API route can give (API.md §2), with the one error body, added to
/// each operation so the document lists every status the server may send.
struct ErrorResponses;

const API_ERRORS: &[(&str, &str)] = &[
    ("400", "invalid_path, invalid_slug or invalid_request"),
    ("401", "unauthenticated: no key or session, an unknown, revoked or expired key, or an ended session"),
    ("403", "forbidden (also a change made with a session cookie without a same-origin request), tenant_mismatch, tenant_suspended, quota_exceeded or feature_not_in_tier"),
    ("404", "not_found or tenant_not_found (also for anything of another tenant)"),
    ("405", "method not allowed on this route"),
    ("408", "the request took longer than the request timeout"),
    ("409", "conflict"),
    ("413", "too_large"),
    ("429", "rate_limited, or quota_exceeded when the monthly call allowance is spent"),
    ("503", "storage_unavailable: the database cannot be reached right now; retry after Retry-After"),
    ("507", "storage_full: the server's disk is full; nothing was changed"),
];

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let detail = ObjectBuilder::new()
            .property("code", ObjectBuilder::new().schema_type(Type::String))
            .property("message", ObjectBuilder::new().schema_type(Type::String))
            .property("request_id", ObjectBuilder::new().schema_type(Type::String))
            .required("code")
            .required("message")
            .required("request_id");
        let body = ObjectBuilder::new().property("error", detail).required("error").build();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.insert("Error".into(), body.into());
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head];
            for op in ops.into_iter().flatten() {
                for (status, why) in API_ERRORS {
                    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build();
                    let response =
                        ResponseBuilder::new().description(*why).content("application/json", content).build();
                    op.responses.responses.entry((*status).to_owned()).or_insert(response.into());
                }
            }
        }
    }
}

/// `X-Tenant-ID` (API.md §3): the operator's way to name a tenant by header, on every `/v1/`
/// route. A tenant key may name only its own tenant.
struct TenantHeader;

impl Modify for TenantHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::Required;
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head];
            for op in ops.into_iter().flatten() {
                let header = ParameterBuilder::new()
                    .name("X-Tenant-ID")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "The tenant to act on, by slug or id: for the operator key (a tenant key may name only its own tenant; another answers 403 tenant_mismatch). Also `/t/{slug}/v1/...` or the host.",
                    ))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build();
                op.parameters.get_or_insert_with(Vec::new).push(header);
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tenantry", description = "Multi-tenant workspace server. Every `/v1/...` route is also served as `/t/{slug}/v1/...`."),
    security(("bearer" = []), ("session" = [])),
    modifiers(&BearerAuth, &ErrorResponses, &TenantHeader),
    paths(
        api::ops::healthz, api::ops::readyz, api::ops::metrics, api::ops::openapi, api::docs::page, api::docs::asset,
        api::admin::page, api::admin::page_folder, api::admin::page_at,
        api::tenants::create, api::tenants::list, api::tenants::show, api::tenants::update, api::tenants::archive,
        api::tenants::suspend, api::tenants::resume, api::tenants::restore,
        api::keys::create, api::keys::list, api::keys::revoke, api::keys::whoami,
        api::files::list, api::files::put, api::files::get, api::files::head, api::files::remove,
        api::audit::list, api::audit::verify,
        api::usage::own, api::usage::tenant, api::bundles::export, api::bundles::import,
        api::tenants::move_tenant, api::tenants::move_status,
        api::memory::set, api::memory::get, api::memory::remove, api::memory::list,
        api::search::search, api::events::list,
        api::webhooks::create, api::webhooks::list, api::webhooks::show, api::webhooks::update, api::webhooks::remove,
        api::webhooks::deliveries,
        api::people::create_user, api::people::list_users, api::people::get_user, api::people::update_user,
        api::people::add_member, api::people::list_members, api::people::update_member, api::people::remove_member, api::people::withdraw_invitation,
        api::people::login, api::people::accept, api::people::logout, api::people::session, api::people::switchable_tenants,
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

    #[test]
    fn every_operation_has_an_id_of_its_own() {
        let spec = serde_json::to_value(spec()).unwrap();
        let mut ids = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                assert!(ids.insert(id.to_owned()), "operationId {id} of {method} {path} is not unique");
            }
        }
    }

    #[test]
    fn request_bodies_are_typed_and_raw_bodies_are_binary() {
        let spec = serde_json::to_value(spec()).unwrap();
        let body = |path: &str, method: &str| spec["paths"][path][method]["requestBody"]["content"].clone();
        assert_eq!(
            body("/v1/files/{path}", "put")["application/octet-stream"]["schema"],
            serde_json::json!({"type": "string", "format": "binary"})
        );
        assert_eq!(body("/v1/tenants", "post")["application/json"]["schema"]["$ref"], "#/components/schemas/NewTenant");
        assert_eq!(body("/v1/keys", "post")["application/json"]["schema"]["$ref"], "#/components/schemas/NewKey");
        let params = spec["paths"]["/v1/files/{path}"]["get"]["parameters"].as_array().unwrap();
        assert!(params.iter().any(|p| p["name"] == "X-Tenant-ID" && p["in"] == "header"));
    }
}
