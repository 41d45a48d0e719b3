//! People (API.md §11): users (operator), members of the request's tenant (tenant admin+), and
//! signing in and out with a session cookie.

use crate::edge::{num_param, ApiJson, ApiQuery, Authed, Facts, SESSION_COOKIE};
use crate::error::ApiResult;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tenantry_core::people::{MemberInfo, Token, UserInfo};
use tenantry_core::service::{
    AcceptInvitation, MemberAdded, MemberList, MemberPatch, NewMember, NewUser, SessionTenant, SessionView, SignIn,
    UserPatch,
};

/// A page of users.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UserList {
    items: Vec<UserInfo>,
    next_cursor: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct UserQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// Create a user (operator or super-admin).
#[utoipa::path(post, operation_id = "create_user", path = "/v1/users", tag = "people", request_body = NewUser,
    responses((status = 201, description = "the user (never the password)", body = UserInfo), (status = 409, description = "the email is taken")))]
pub async fn create_user(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiJson(req): ApiJson<NewUser>,
) -> ApiResult<Response> {
    let user = state.svc.create_user(&caller, req).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// Users, by email (operator or super-admin).
#[utoipa::path(get, operation_id = "list_users", path = "/v1/users", tag = "people",
    params(("limit" = Option<usize>, Query, description = "at most this many (default 100, at most 1000)"), ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before")),
    responses((status = 200, description = "a page of users", body = UserList)))]
pub async fn list_users(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult<Response> {
    let page = state.svc.list_users(&caller, num_param(&q.limit, "limit")?, q.cursor.as_deref())?;
    Ok(Json(UserList { items: page.items, next_cursor: page.next_cursor }).into_response())
}

/// One user (operator or super-admin).
#[utoipa::path(get, operation_id = "get_user", path = "/v1/users/{id}", tag = "people", params(("id" = String, Path, description = "the user's id (`usr_...`)")),
    responses((status = 200, description = "the user", body = UserInfo), (status = 404, description = "no such user")))]
pub async fn get_user(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.svc.get_user(&caller, &id)?).into_response())
}

/// Change a user's name, password, super-admin right, or disable them (operator or
/// super-admin). A new password or disabling ends their sessions at once.
#[utoipa::path(patch, operation_id = "update_user", path = "/v1/users/{id}", tag = "people", request_body = UserPatch, params(("id" = String, Path, description = "the user's id")),
    responses((status = 200, description = "the user", body = UserInfo), (status = 404, description = "no such user")))]
pub async fn update_user(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Response> {
    Ok(Json(state.svc.update_user(&caller, &id, patch).await?).into_response())
}

/// Invite someone to the request's tenant (admin+; a role no higher than the caller's): the answer
/// holds a one-time invitation, which the person accepts (`POST /v1/auth/accept`) to become a
/// member. The operator (or a super-admin) adds an existing account directly.
#[utoipa::path(post, operation_id = "add_member", path = "/v1/members", tag = "people", request_body = NewMember,
    responses((status = 201, description = "`invited`, with the invitation, or `member`", body = MemberAdded),
        (status = 403, description = "a role above the caller's"), (status = 409, description = "a member already")))]
pub async fn add_member(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiJson(req): ApiJson<NewMember>,
) -> ApiResult<Response> {
    let added = state.svc.add_member(&caller, req).await?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}

/// The request's tenant's members and pending invitations (admin+).
#[utoipa::path(get, operation_id = "list_members", path = "/v1/members", tag = "people",
    responses((status = 200, description = "the members, oldest first, and the invitations not accepted yet", body = MemberList)))]
pub async fn list_members(State(state): State<AppState>, Authed(caller): Authed) -> ApiResult<Response> {
    Ok(Json(state.svc.list_members(&caller).await?).into_response())
}

/// Withdraw an invitation not accepted yet (admin+).
#[utoipa::path(delete, operation_id = "withdraw_invitation", path = "/v1/invitations/{id}", tag = "people",
    params(("id" = String, Path, description = "the invitation's id (`inv_...`)")),
    responses((status = 204, description = "withdrawn: its token no longer works"), (status = 404, description = "no such invitation in this tenant")))]
pub async fn withdraw_invitation(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    state.svc.withdraw_invitation(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Change a member's role (admin+; an admin cannot change an owner, nor make one).
#[utoipa::path(patch, operation_id = "update_member", path = "/v1/members/{user_id}", tag = "people", request_body = MemberPatch,
    params(("user_id" = String, Path, description = "the member's user id (`usr_...`)")),
    responses((status = 200, description = "the member", body = MemberInfo), (status = 404, description = "not a member")))]
pub async fn update_member(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<MemberPatch>,
) -> ApiResult<Response> {
    Ok(Json(state.svc.set_member_role(&caller, &id, patch).await?).into_response())
}

/// Remove a member (admin+; an admin cannot remove an owner): their access to this tenant ends
/// at once.
#[utoipa::path(delete, operation_id = "remove_member", path = "/v1/members/{user_id}", tag = "people",
    params(("user_id" = String, Path, description = "the member's user id")),
    responses((status = 204, description = "removed"), (status = 404, description = "not a member")))]
pub async fn remove_member(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    state.svc.remove_member(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The `Set-Cookie` value of a new session, or of its end (`None`).
fn set_cookie(state: &AppState, token: Option<&Token>) -> HeaderValue {
    let secure = if state.config.secure_cookies { "; Secure" } else { "" };
    let value = match token {
        Some(t) => {
            let max_age = state.svc.config().sessions.absolute_ms / 1000;
            format!("{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}", t.expose())
        }
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn signed_in(state: &AppState, token: &Token, view: SessionView) -> Response {
    let mut resp = Json(view).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set_cookie(state, Some(token)));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Sign in: 200 with the session cookie (`HttpOnly`, `SameSite=Lax`). Failed attempts are
/// throttled per account and per address (429) and audited.
#[utoipa::path(post, operation_id = "login", path = "/v1/auth/login", tag = "people", request_body = SignIn, security(()),
    responses((status = 200, description = "signed in; `Set-Cookie: tenantry_session=...`", body = SessionView),
        (status = 401, description = "wrong email or password"), (status = 429, description = "too many failed attempts")))]
pub async fn login(
    State(state): State<AppState>,
    Facts(facts): Facts,
    ApiJson(req): ApiJson<SignIn>,
) -> ApiResult<Response> {
    refuse_cross_site(&facts)?;
    let (token, view) = state.svc.sign_in(&facts, req).await?;
    Ok(signed_in(&state, &token, view))
}

/// Signing in (or accepting an invitation) from another site's page is refused (login CSRF: it
/// would sign the browser in as someone else). Clients that are not browsers send no `Origin`
/// and are let through.
fn refuse_cross_site(facts: &tenantry_core::caller::RequestFacts) -> ApiResult<()> {
    if facts.cross_site {
        return Err(tenantry_core::Error::forbidden(
            "sign in from this server's own pages: the browser said the request comes from another site",
        )
        .into());
    }
    Ok(())
}

/// Accept an invitation: with the account's password (or, for an email without an account, the
/// new account's first password and a name), become a member and sign in.
#[utoipa::path(post, operation_id = "accept_invitation", path = "/v1/auth/accept", tag = "people", request_body = AcceptInvitation, security(()),
    responses((status = 200, description = "signed in; `Set-Cookie: tenantry_session=...`", body = SessionView),
        (status = 401, description = "the invitation is unknown, used or expired, or the password is wrong")))]
pub async fn accept(
    State(state): State<AppState>,
    Facts(facts): Facts,
    ApiJson(req): ApiJson<AcceptInvitation>,
) -> ApiResult<Response> {
    refuse_cross_site(&facts)?;
    let (token, view) = state.svc.accept_invitation(&facts, req).await?;
    Ok(signed_in(&state, &token, view))
}

/// Sign out: the session ends on every node, and the cookie is cleared.
#[utoipa::path(post, operation_id = "logout", path = "/v1/auth/logout", tag = "people", security(("session" = [])),
    responses((status = 204, description = "signed out"), (status = 401, description = "not signed in"), (status = 403, description = "not same-origin")))]
pub async fn logout(State(state): State<AppState>, Facts(facts): Facts) -> ApiResult<Response> {
    state.svc.sign_out(&facts).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set_cookie(&state, None));
    Ok(resp)
}

/// The tenants the signed-in person can open.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SwitchableTenants {
    items: Vec<SessionTenant>,
}

#[derive(serde::Deserialize)]
pub struct SwitcherQuery {
    q: Option<String>,
    limit: Option<String>,
}

/// The tenant switcher's search: the signed-in person's tenants whose slug or name contains `q`
/// (a super-admin's: every tenant), in slug order; answered from memory.
#[utoipa::path(get, operation_id = "switchable_tenants", path = "/v1/auth/tenants", tag = "people", security(("session" = [])),
    params(("q" = Option<String>, Query, description = "text the slug or name contains, in any case (at most 200 characters)"),
        ("limit" = Option<usize>, Query, description = "at most this many (default 20, at most 100)")),
    responses((status = 200, description = "the matching tenants", body = SwitchableTenants), (status = 401, description = "not signed in")))]
pub async fn switchable_tenants(
    State(state): State<AppState>,
    Facts(facts): Facts,
    ApiQuery(q): ApiQuery<SwitcherQuery>,
) -> ApiResult<Response> {
    let items = state.svc.switchable_tenants(&facts, q.q.as_deref(), num_param(&q.limit, "limit")?)?;
    let mut resp = Json(SwitchableTenants { items }).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The signed-in person, their tenants, and when the session ends.
#[utoipa::path(get, operation_id = "session", path = "/v1/auth/session", tag = "people", security(("session" = [])),
    responses((status = 200, description = "the person and their tenants", body = SessionView), (status = 401, description = "not signed in")))]
pub async fn session(State(state): State<AppState>, Facts(facts): Facts) -> ApiResult<Response> {
    let mut resp = Json(state.svc.session(&facts)?).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
