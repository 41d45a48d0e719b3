//! People (API.md §11): users (the operator's), members (a tenant admin's), and signing in and
//! out. A member's rights are a key's rights: the same roles, checked by the same `Caller`.
//!
//! Where things are audited: a membership change in its tenant's log, in the change's
//! transaction; what concerns a person rather than a tenant (users created or changed, sign-ins
//! that worked or failed, sign-outs, invitations accepted) in the `default` tenant's log, the
//! install's own.

use super::{actions, decode_cursor, encode_cursor, page_limit, validate_name, Tenantry};
use crate::caller::{Caller, RequestFacts};
use crate::error::{Error, ErrorCode, Result};
use crate::events::{types as event_types, EventDraft, Journal};
use crate::ids::{SessionId, TenantId, UserId};
use crate::model::{AuditDraft, Page, TenantStatus};
use crate::people::{
    bad_credentials, normalize_email, validate_password, MemberInfo, Membership, SessionRecord, SignedIn, Token,
    UserInfo, UserRecord,
};
use crate::role::Role;
use crate::slug::DEFAULT_SLUG;
use crate::store::TenantScope;
use crate::time::Timestamp;
use std::sync::Arc;

/// `POST /v1/users`.
#[derive(Debug, Clone, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"email": "ada@example.com", "name": "Ada Lovelace", "password": "correct horse battery"})))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    pub name: Option<String>,
    /// At least 8 characters. Without one, the user cannot sign in until a password is set
    /// (`PATCH /v1/users/{id}`) or an invitation is accepted.
    pub password: Option<String>,
    /// The operator's rights over every tenant.
    pub super_admin: Option<bool>,
}

/// `PATCH /v1/users/{id}`: each field given is changed. A new password or disabling ends the
/// user's sessions at once.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub name: Option<String>,
    pub password: Option<String>,
    pub super_admin: Option<bool>,
    pub disabled: Option<bool>,
}

/// `POST /v1/members`.
#[derive(Debug, Clone, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"email": "grace@example.com", "role": "writer"})))]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    pub email: String,
    /// `owner`, `admin`, `writer` or `reader`; at most the caller's own.
    pub role: String,
}

/// `PATCH /v1/members/{user_id}`.
#[derive(Debug, Clone, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    pub role: String,
}

/// `POST /v1/auth/login`.
#[derive(Debug, Clone, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub email: String,
    pub password: String,
}

/// `POST /v1/auth/accept`: an invitation's token, and the password the invited person chooses.
#[derive(Debug, Clone, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    pub token: String,
    pub password: String,
    pub name: Option<String>,
}

/// A one-time invitation: shown only in the answer that made it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invitation {
    /// Give it to the invited person; `POST /v1/auth/accept` with it sets their password and
    /// signs them in. It works once, until `expires_at`.
    pub token: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

/// What `POST /v1/members` answers: the member, and an invitation when the person has no
/// password yet (a new account, or one never signed in to).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberAdded {
    #[serde(flatten)]
    pub member: MemberInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation: Option<Invitation>,
}

/// One of a person's tenants.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionTenant {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub role: Role,
    pub status: TenantStatus,
}

/// `GET /v1/auth/session`: the person, their tenants (by slug), and when the session ends.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    pub user: UserInfo,
    pub tenants: Vec<SessionTenant>,
    /// The absolute end of the session.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
    /// When it ends if unused from now.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub idle_expires_at: Timestamp,
}

fn user_not_found(id: &str) -> Error {
    Error::not_found(format!("user '{id}' not found"))
}

fn member_not_found(id: &str) -> Error {
    Error::not_found(format!("member '{id}' not found"))
}

impl Tenantry {
    /// Audits what concerns a person rather than a tenant, in the `default` tenant's log.
    async fn audit_install(&self, draft: AuditDraft) -> Result<()> {
        match self.directory.tenant_by_slug(DEFAULT_SLUG) {
            Some(t) => self.store.append_audit(&TenantScope::new(&t), draft).await,
            None => Ok(()),
        }
    }

    fn install_draft(facts: &RequestFacts, actor: &str, action: &str, target: &str, result: &str) -> AuditDraft {
        AuditDraft {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            result: result.into(),
            request_id: facts.request_id.clone(),
            ip: facts.ip.clone(),
        }
    }

    // ---- users (the operator's) ---------------------------------------------------------------

    pub async fn create_user(&self, caller: &Caller, req: NewUser) -> Result<UserInfo> {
        let grant = caller.operator()?;
        let email = normalize_email(&req.email)?;
        let name = match req.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => validate_name(n)?,
            None => String::new(),
        };
        let password = match req.password {
            Some(p) => {
                validate_password(&p)?;
                Some(self.config.password_work.hash(p).await?)
            }
            None => None,
        };
        if self.people.user_by_email(&email).is_some() {
            return Err(Error::conflict(format!("a user with email {email} exists already")));
        }
        let now = self.clock.now();
        let user = UserRecord {
            id: UserId::generate(),
            email,
            name,
            password,
            super_admin: req.super_admin.unwrap_or(false),
            disabled_at: None,
            invite: None,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_user(&user).await?;
        let info = user.info();
        self.people.put_user(user, false);
        self.audit_install(grant.audit(actions::USER_CREATE, info.id.as_str(), "ok")).await?;
        Ok(info)
    }

    /// Users in email order, `limit` at a time after `cursor`.
    pub fn list_users(&self, caller: &Caller, limit: Option<usize>, cursor: Option<&str>) -> Result<Page<UserInfo>> {
        caller.operator()?;
        let limit = page_limit(limit)?;
        let after = decode_cursor(cursor)?;
        let users: Vec<UserInfo> = self
            .people
            .users()
            .into_iter()
            .filter(|u| after.as_deref().is_none_or(|a| u.email.as_str() > a))
            .take(limit + 1)
            .map(|u| u.info())
            .collect();
        Ok(Page::cut(users, limit, |u| encode_cursor(&u.email)))
    }

    pub fn get_user(&self, caller: &Caller, id: &str) -> Result<UserInfo> {
        caller.operator()?;
        let user = UserId::parse(id).and_then(|u| self.people.user(&u)).ok_or_else(|| user_not_found(id))?;
        Ok(user.info())
    }

    pub async fn update_user(&self, caller: &Caller, id: &str, patch: UserPatch) -> Result<UserInfo> {
        let grant = caller.operator()?;
        let old = UserId::parse(id).and_then(|u| self.people.user(&u)).ok_or_else(|| user_not_found(id))?;
        let mut user = (*old).clone();
        let now = self.clock.now();
        let mut end_sessions = false;
        if let Some(n) = patch.name {
            user.name = if n.trim().is_empty() { String::new() } else { validate_name(&n)? };
        }
        if let Some(p) = patch.password {
            validate_password(&p)?;
            user.password = Some(self.config.password_work.hash(p).await?);
            user.invite = None;
            end_sessions = true;
        }
        if let Some(s) = patch.super_admin {
            user.super_admin = s;
        }
        match patch.disabled {
            Some(true) if user.disabled_at.is_none() => {
                user.disabled_at = Some(now);
                end_sessions = true;
            }
            Some(false) => user.disabled_at = None,
            _ => {}
        }
        user.updated_at = now;
        self.store.update_user(&user, end_sessions).await?;
        let info = user.info();
        self.people.put_user(user, end_sessions);
        self.audit_install(grant.audit(actions::USER_UPDATE, id, "ok")).await?;
        Ok(info)
    }

    // ---- members (a tenant admin's) -------------------------------------------------------------

    fn member_info(&self, m: &Membership) -> Option<MemberInfo> {
        let user = self.people.user(&m.user_id)?;
        Some(MemberInfo {
            user_id: m.user_id.clone(),
            email: user.email.clone(),
            name: user.name.clone(),
            role: m.role,
            has_password: user.password.is_some(),
            created_at: m.created_at,
            created_by: m.created_by.clone(),
        })
    }

    fn require_member_admin(&self, caller: &Caller) -> Result<()> {
        caller.require_role(Role::Admin)?;
        caller.require_whole_tenant("managing members")?;
        self.require_live(caller)
    }

    /// A new invitation for a user without a password (replacing any earlier one).
    async fn invite(&self, user: &UserRecord, now: Timestamp) -> Result<(UserRecord, Invitation)> {
        let token = Token::mint(user.id.as_str());
        let expires_at = Timestamp::from_millis(now.millis().saturating_add(self.config.sessions.invite_ms));
        let mut invited = user.clone();
        invited.invite = Some((token.hash(), expires_at));
        invited.updated_at = now;
        Ok((invited, Invitation { token: token.expose().to_owned(), expires_at }))
    }

    pub async fn add_member(&self, caller: &Caller, req: NewMember) -> Result<MemberAdded> {
        self.require_member_admin(caller)?;
        let role = Role::parse(&req.role)?;
        if role > caller.role() {
            return Err(Error::forbidden(format!("a {} cannot make a member {role}", caller.role())));
        }
        let email = normalize_email(&req.email)?;
        let scope = caller.scope();
        let now = self.clock.now();
        let (user, invitation) = match self.people.user_by_email(&email) {
            Some(u) => {
                if self.people.role_in(&u.id, scope.tenant_id()).is_some() {
                    return Err(Error::conflict(format!(
                        "{email} is a member already; change the role with PATCH /v1/members/{}",
                        u.id
                    )));
                }
                if u.password.is_some() {
                    ((*u).clone(), None)
                } else {
                    let (invited, inv) = self.invite(&u, now).await?;
                    self.store.update_user(&invited, false).await?;
                    self.people.put_user(invited.clone(), false);
                    (invited, Some(inv))
                }
            }
            None => {
                let fresh = UserRecord {
                    id: UserId::generate(),
                    email: email.clone(),
                    name: String::new(),
                    password: None,
                    super_admin: false,
                    disabled_at: None,
                    invite: None,
                    created_at: now,
                    updated_at: now,
                };
                let (invited, inv) = self.invite(&fresh, now).await?;
                self.store.insert_user(&invited).await?;
                self.people.put_user(invited.clone(), false);
                (invited, Some(inv))
            }
        };
        let member = Membership {
            tenant_id: scope.tenant_id().clone(),
            user_id: user.id.clone(),
            role,
            created_at: now,
            created_by: caller.actor(),
        };
        let event = EventDraft::new(event_types::MEMBER_ADDED, caller.actor())
            .detail(serde_json::json!({"user_id": user.id, "email": user.email, "role": role.as_str()}));
        let journal = Journal::with_event(caller.audit(actions::MEMBER_ADD, user.id.as_str(), "ok"), event);
        self.store.put_member(&scope, &member, journal).await?;
        self.people.set_role(scope.tenant_id(), &user.id, Some(role));
        let member = self.member_info(&member).ok_or_else(|| Error::internal("the member's user vanished"))?;
        Ok(MemberAdded { member, invitation })
    }

    pub async fn list_members(&self, caller: &Caller) -> Result<Vec<MemberInfo>> {
        self.require_member_admin(caller)?;
        let members = self.store.load_members(&caller.scope()).await?;
        Ok(members.iter().filter_map(|m| self.member_info(m)).collect())
    }

    /// The member's current role, refusing what an admin may not touch (an owner).
    fn member_in_reach(&self, caller: &Caller, id: &str) -> Result<(UserId, Role)> {
        let user = UserId::parse(id).ok_or_else(|| member_not_found(id))?;
        let current = self.people.role_in(&user, &caller.tenant().id).ok_or_else(|| member_not_found(id))?;
        if current > caller.role() {
            return Err(Error::forbidden(format!("a {} cannot change or remove a {current}", caller.role())));
        }
        Ok((user, current))
    }

    pub async fn set_member_role(&self, caller: &Caller, id: &str, patch: MemberPatch) -> Result<MemberInfo> {
        self.require_member_admin(caller)?;
        let role = Role::parse(&patch.role)?;
        let (user, _) = self.member_in_reach(caller, id)?;
        if role > caller.role() {
            return Err(Error::forbidden(format!("a {} cannot make a member {role}", caller.role())));
        }
        let scope = caller.scope();
        let member = Membership {
            tenant_id: scope.tenant_id().clone(),
            user_id: user.clone(),
            role,
            created_at: self.clock.now(),
            created_by: caller.actor(),
        };
        let event = EventDraft::new(event_types::MEMBER_UPDATED, caller.actor())
            .detail(serde_json::json!({"user_id": user, "role": role.as_str()}));
        let journal = Journal::with_event(caller.audit(actions::MEMBER_UPDATE, id, "ok"), event);
        self.store.put_member(&scope, &member, journal).await?;
        self.people.set_role(scope.tenant_id(), &user, Some(role));
        let stored = self.store.load_members(&scope).await?;
        stored.iter().find(|m| m.user_id == user).and_then(|m| self.member_info(m)).ok_or_else(|| member_not_found(id))
    }

    pub async fn remove_member(&self, caller: &Caller, id: &str) -> Result<()> {
        self.require_member_admin(caller)?;
        let (user, _) = self.member_in_reach(caller, id)?;
        let scope = caller.scope();
        let event =
            EventDraft::new(event_types::MEMBER_REMOVED, caller.actor()).detail(serde_json::json!({"user_id": user}));
        let journal = Journal::with_event(caller.audit(actions::MEMBER_REMOVE, id, "ok"), event);
        self.store.remove_member(&scope, &user, journal).await?;
        self.people.set_role(scope.tenant_id(), &user, None);
        Ok(())
    }

    // ---- sessions ---------------------------------------------------------------------------------

    /// The signed-in person of a request that needs no tenant (`/v1/auth/*`), with the same
    /// same-origin rule for changes as every other route.
    pub fn signed_in(&self, facts: &RequestFacts) -> Result<SignedIn> {
        let token = facts.session.as_deref().ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "not signed in"))?;
        let signed = self
            .people
            .check(&Token::from_presented(token), self.clock.now(), &self.config.sessions)
            .ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "the session has ended; sign in again"))?;
        if facts.changes && !facts.same_origin {
            return Err(crate::people::cross_origin_change());
        }
        Ok(signed)
    }

    /// Checks an email and password; throttled per account and per address, audited either way.
    /// Answers the new session's token (for the cookie) and what `GET /v1/auth/session` says.
    pub async fn sign_in(&self, facts: &RequestFacts, req: SignIn) -> Result<(Token, SessionView)> {
        let email = req.email.trim().to_lowercase();
        let now = self.clock.now();
        let refused = |result: &str| Self::install_draft(facts, "anonymous", actions::AUTH_LOGIN, &email, result);
        if let Some(wait) = self.throttle.blocked(&email, &facts.ip, now) {
            self.audit_install(refused("refused:rate_limited")).await?;
            let mut e = Error::new(
                ErrorCode::RateLimited,
                format!("too many failed sign-ins for this account or address; retry in {wait} s"),
            );
            e.details = Some(serde_json::Map::from_iter([("retry_after".to_owned(), wait.into())]));
            return Err(e);
        }
        let user = self.people.user_by_email(&email).filter(|u| u.disabled_at.is_none());
        let hash = user.as_ref().and_then(|u| u.password.clone());
        if !self.config.password_work.verify(hash, req.password).await {
            self.throttle.failed(&email, &facts.ip, now);
            self.audit_install(refused("refused:unauthenticated")).await?;
            return Err(bad_credentials());
        }
        let user = user.ok_or_else(bad_credentials)?;
        self.throttle.succeeded(&email);
        let opened = self.open_session(&user).await?;
        let actor = format!("user:{}", user.id);
        self.audit_install(Self::install_draft(facts, &actor, actions::AUTH_LOGIN, &email, "ok")).await?;
        Ok(opened)
    }

    async fn open_session(&self, user: &UserRecord) -> Result<(Token, SessionView)> {
        // A bounded number per person: the oldest end first.
        let held = self.people.sessions_of(&user.id);
        for old in held.iter().take((held.len() + 1).saturating_sub(crate::people::MAX_SESSIONS_PER_USER)) {
            self.store.delete_session(old).await?;
            self.people.remove_session(old);
        }
        let now = self.clock.now();
        let id = SessionId::generate();
        let token = Token::mint(id.as_str());
        let record = SessionRecord {
            id,
            user_id: user.id.clone(),
            hash: token.hash(),
            created_at: now,
            expires_at: Timestamp::from_millis(now.millis().saturating_add(self.config.sessions.absolute_ms)),
            last_seen_at: now,
        };
        self.store.insert_session(&record).await?;
        self.people.put_session(record.clone());
        let view = self.view_session(user, &record, now);
        Ok((token, view))
    }

    fn view_session(&self, user: &UserRecord, session: &SessionRecord, last_seen: Timestamp) -> SessionView {
        let tenants = self
            .people
            .memberships_of(&user.id)
            .into_iter()
            .filter_map(|(id, role)| {
                let t = self.directory.tenant(&id)?;
                (t.status != TenantStatus::Archived).then(|| SessionTenant {
                    id: t.id.clone(),
                    slug: t.slug.as_str().to_owned(),
                    name: t.name.clone(),
                    role,
                    status: t.status,
                })
            })
            .collect::<Vec<_>>();
        let mut tenants = tenants;
        tenants.sort_by(|a, b| a.slug.cmp(&b.slug));
        let idle_end = last_seen.millis().saturating_add(self.config.sessions.idle_ms);
        SessionView {
            user: user.info(),
            tenants,
            expires_at: session.expires_at,
            idle_expires_at: Timestamp::from_millis(idle_end.min(session.expires_at.millis())),
        }
    }

    /// `GET /v1/auth/session`.
    pub fn session(&self, facts: &RequestFacts) -> Result<SessionView> {
        let signed = self.signed_in(facts)?;
        Ok(self.view_session(&signed.user, &signed.session.record, signed.session.last_seen()))
    }

    /// Ends the request's session, on every node.
    pub async fn sign_out(&self, facts: &RequestFacts) -> Result<()> {
        let signed = self.signed_in(facts)?;
        let id = signed.session.record.id.clone();
        self.store.delete_session(&id).await?;
        self.people.remove_session(&id);
        let actor = format!("user:{}", signed.user.id);
        self.audit_install(Self::install_draft(facts, &actor, actions::AUTH_LOGOUT, &signed.user.email, "ok")).await
    }

    /// Accepts an invitation: sets the person's password (and name) and signs them in.
    pub async fn accept_invitation(&self, facts: &RequestFacts, req: AcceptInvitation) -> Result<(Token, SessionView)> {
        let token = Token::from_presented(req.token.trim());
        let invalid = || Error::new(ErrorCode::Unauthenticated, "the invitation is unknown, used or expired");
        let user = token.id().and_then(UserId::parse).and_then(|id| self.people.user(&id)).ok_or_else(invalid)?;
        let now = self.clock.now();
        let valid = user.disabled_at.is_none()
            && user.invite.as_ref().is_some_and(|(hash, until)| now < *until && token.matches(hash));
        if !valid {
            return Err(invalid());
        }
        validate_password(&req.password)?;
        let mut accepted = (*user).clone();
        if let Some(n) = req.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            accepted.name = validate_name(n)?;
        }
        accepted.password = Some(self.config.password_work.hash(req.password).await?);
        accepted.invite = None;
        accepted.updated_at = now;
        self.store.update_user(&accepted, true).await?;
        self.people.put_user(accepted.clone(), true);
        let actor = format!("user:{}", accepted.id);
        self.audit_install(Self::install_draft(facts, &actor, actions::AUTH_ACCEPT, &accepted.email, "ok")).await?;
        self.open_session(&accepted).await
    }

    /// Background upkeep: stores when sessions were last used (at most once a minute each) and
    /// deletes the ones that ended.
    pub async fn flush_sessions(&self) -> Result<()> {
        let touched = self.people.touched(60_000);
        if !touched.is_empty() {
            self.store.touch_sessions(&touched).await?;
        }
        let now = self.clock.now();
        self.store.delete_ended_sessions(now, self.config.sessions.idle_ms).await?;
        self.people.drop_ended(now, &self.config.sessions);
        Ok(())
    }

    /// Re-reads a user and their sessions (another node changed them).
    pub async fn reload_person(&self, user: &UserId) -> Result<()> {
        let seen = self.people.local_changes(user);
        let found = self.store.load_person(user).await?;
        self.people.apply_reread(user, found, seen);
        Ok(())
    }

    /// The person's user record, for tools that need more than the request's grant.
    pub fn user(&self, id: &UserId) -> Option<Arc<UserRecord>> {
        self.people.user(id)
    }
}
