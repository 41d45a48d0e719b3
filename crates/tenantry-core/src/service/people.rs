//! People (API.md §11): users (the operator's), members (a tenant admin's), and signing in and
//! out. A member's rights are a key's rights: the same roles, checked by the same `Caller`.
//!
//! Joining a tenant takes the person's consent: a tenant admin invites an email, and the
//! membership is made when someone accepts with the invitation's token and proves the account is
//! theirs (its password; for an email without an account, the new account's first password). So
//! no tenant admin can take over, or add to their tenant, an account that is not theirs. Only the
//! operator (or a super-admin) adds an existing account directly.
//!
//! Where things are audited: a membership change in its tenant's log, in the change's
//! transaction (an invitation, which is no tenant data, right after it is stored); what concerns
//! a person rather than a tenant (users created or changed, sign-ins that worked or failed,
//! sign-outs) in the `default` tenant's log, the install's own.

use super::{actions, decode_cursor, encode_cursor, page_limit, validate_name, Tenantry};
use crate::caller::{Caller, RequestFacts};
use crate::error::{Error, ErrorCode, Result};
use crate::events::{types as event_types, EventDraft, Journal};
use crate::ids::{InviteId, KeyId, SessionId, TenantId, UserId};
use crate::model::{AuditDraft, Page, Tenant, TenantStatus};
use crate::people::{
    bad_credentials, normalize_email, validate_password, InvitationRecord, MemberInfo, Membership, PendingInvitation,
    SessionRecord, SignedIn, Token, UserInfo, UserRecord,
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
    /// At least 8 characters. Without one, the user cannot sign in until the operator sets one
    /// (`PATCH /v1/users/{id}`).
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

/// `POST /v1/auth/accept`: an invitation's token, and the password of the person accepting: the
/// account's password when the email has one, else the new account's first (then `name` too).
#[derive(Debug, Clone, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    pub token: String,
    pub password: String,
    pub name: Option<String>,
}

/// A one-time invitation: its token is shown only in the answer that made it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invitation {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: InviteId,
    /// Give it to the invited person: `POST /v1/auth/accept` with it (and their password, or a
    /// new account's first) makes them a member and signs them in. It works once, until
    /// `expires_at`.
    pub token: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

/// What `POST /v1/members` answers: `status` `member` (the operator added an existing account:
/// `user_id` names it) or `invited` (the membership is made when the person accepts
/// `invitation`).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberAdded {
    pub email: String,
    pub role: Role,
    /// `member` or `invited`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation: Option<Invitation>,
}

/// `GET /v1/members`: the members, and the invitations not accepted yet.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberList {
    pub items: Vec<MemberInfo>,
    pub invitations: Vec<PendingInvitation>,
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

/// Longest email a sign-in looks up (longer ones cannot be accounts: refused at once).
const MAX_EMAIL_BYTES: usize = 254;

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
        if let Some(p) = &req.password {
            validate_password(p)?;
        }
        if self.people.user_by_email(&email).is_some() {
            return Err(Error::conflict(format!("a user with email {email} exists already")));
        }
        let password = match req.password {
            Some(p) => Some(self.config.password_work.hash(p).await?),
            None => None,
        };
        let now = self.clock.now();
        let user = UserRecord {
            id: UserId::generate(),
            email,
            name,
            password,
            super_admin: req.super_admin.unwrap_or(false),
            disabled_at: None,
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
        let user_id = UserId::parse(id).filter(|u| self.people.user(u).is_some()).ok_or_else(|| user_not_found(id))?;
        let name = match patch.name.as_deref() {
            Some(n) if n.trim().is_empty() => Some(String::new()),
            Some(n) => Some(validate_name(n)?),
            None => None,
        };
        let password = match patch.password {
            Some(p) => {
                validate_password(&p)?;
                Some(self.config.password_work.hash(p).await?)
            }
            None => None,
        };
        // Applied to the user as they are after the hashing, and stored only if still so.
        let old = self.people.user(&user_id).ok_or_else(|| user_not_found(id))?;
        let mut user = (*old).clone();
        let now = self.clock.now();
        let mut end_sessions = false;
        if let Some(n) = name {
            user.name = n;
        }
        if let Some(p) = password {
            user.password = Some(p);
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
        // Each version's `updated_at` differs from the last, so the store can tell them apart.
        user.updated_at = Timestamp::from_millis(now.millis().max(old.updated_at.millis() + 1));
        self.store.update_user(&user, old.updated_at, end_sessions).await.map_err(|e| match e.code {
            ErrorCode::Conflict => Error::conflict(format!("user '{id}' changed meanwhile; try again")),
            _ => e,
        })?;
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

    /// Adds a member: an existing account directly when the operator (or a super-admin) asks;
    /// otherwise an invitation, which the person accepts to become a member.
    pub async fn add_member(&self, caller: &Caller, req: NewMember) -> Result<MemberAdded> {
        self.require_member_admin(caller)?;
        let role = Role::parse(&req.role)?;
        if role > caller.role() {
            return Err(Error::forbidden(format!("a {} cannot make a member {role}", caller.role())));
        }
        let email = normalize_email(&req.email)?;
        let scope = caller.scope();
        let now = self.clock.now();
        let existing = self.people.user_by_email(&email);
        if let Some(u) = &existing {
            if self.people.role_in(&u.id, scope.tenant_id()).is_some() {
                return Err(Error::conflict(format!(
                    "{email} is a member already; change the role with PATCH /v1/members/{}",
                    u.id
                )));
            }
        }
        if let (Some(user), true) = (&existing, caller.is_operator()) {
            let member = Membership {
                tenant_id: scope.tenant_id().clone(),
                user_id: user.id.clone(),
                role,
                created_at: now,
                created_by: caller.actor(),
            };
            self.insert_member(&scope, &member, caller.audit(actions::MEMBER_ADD, user.id.as_str(), "ok")).await?;
            return Ok(MemberAdded {
                email,
                role,
                status: "member".into(),
                user_id: Some(user.id.clone()),
                invitation: None,
            });
        }
        // A new invitation replaces the tenant's pending one for the email: not one the caller
        // could not withdraw.
        let pending = self.store.list_invitations(&scope).await?;
        if let Some(old) = pending.iter().find(|i| i.email == email && i.role > caller.role()) {
            return Err(Error::forbidden(format!("a {} cannot replace an invitation as {}", caller.role(), old.role)));
        }
        let id = InviteId::generate();
        let token = Token::mint(id.as_str());
        let invitation = InvitationRecord {
            id: id.clone(),
            tenant_id: scope.tenant_id().clone(),
            email: email.clone(),
            role,
            hash: token.hash(),
            created_at: now,
            expires_at: Timestamp::from_millis(now.millis().saturating_add(self.config.sessions.invite_ms)),
            created_by: caller.actor(),
        };
        self.store.insert_invitation(&invitation).await?;
        self.store.append_audit(&scope, caller.audit(actions::MEMBER_INVITE, &email, "ok")).await?;
        Ok(MemberAdded {
            email,
            role,
            status: "invited".into(),
            user_id: None,
            invitation: Some(Invitation { id, token: token.expose().to_owned(), expires_at: invitation.expires_at }),
        })
    }

    async fn insert_member(&self, scope: &TenantScope, member: &Membership, audit: AuditDraft) -> Result<()> {
        let email = self.people.user(&member.user_id).map(|u| u.email.clone()).unwrap_or_default();
        let event = EventDraft::new(event_types::MEMBER_ADDED, audit.actor.clone())
            .detail(serde_json::json!({"user_id": member.user_id, "email": email, "role": member.role.as_str()}));
        self.store.insert_member(scope, member, Journal::with_event(audit, event)).await?;
        self.people.set_role(scope.tenant_id(), &member.user_id, Some(member.role));
        Ok(())
    }

    /// The tenant's members, and its invitations not accepted yet.
    pub async fn list_members(&self, caller: &Caller) -> Result<MemberList> {
        self.require_member_admin(caller)?;
        let members = self.store.load_members(&caller.scope()).await?;
        let now = self.clock.now();
        let invitations = self.store.list_invitations(&caller.scope()).await?;
        Ok(MemberList {
            items: members.iter().filter_map(|m| self.member_info(m)).collect(),
            invitations: invitations.iter().filter(|i| now < i.expires_at).map(InvitationRecord::info).collect(),
        })
    }

    /// Withdraws an invitation of the request's tenant.
    pub async fn withdraw_invitation(&self, caller: &Caller, id: &str) -> Result<()> {
        self.require_member_admin(caller)?;
        let not_found = || Error::not_found(format!("invitation '{id}' not found"));
        let invite = InviteId::parse(id).ok_or_else(not_found)?;
        let found = self.store.get_invitation(&invite).await?;
        let ours = found.filter(|i| &i.tenant_id == caller.scope().tenant_id()).ok_or_else(not_found)?;
        if ours.role > caller.role() {
            return Err(Error::forbidden(format!(
                "a {} cannot withdraw an invitation as {}",
                caller.role(),
                ours.role
            )));
        }
        if !self.store.delete_invitation(&invite).await? {
            return Err(not_found());
        }
        self.store.append_audit(&caller.scope(), caller.audit(actions::MEMBER_WITHDRAW, &ours.email, "ok")).await
    }

    /// The member's current role, refusing what the caller may not touch (a stronger role).
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
        let event = EventDraft::new(event_types::MEMBER_UPDATED, caller.actor())
            .detail(serde_json::json!({"user_id": user, "role": role.as_str()}));
        let journal = Journal::with_event(caller.audit(actions::MEMBER_UPDATE, id, "ok"), event);
        self.store.set_member_role(&scope, &user, role, journal).await?;
        // Memory follows what the store holds after the change (a removal that raced it wins).
        let stored = self.store.load_members(&scope).await?;
        let now_member = stored.iter().find(|m| m.user_id == user);
        self.people.set_role(scope.tenant_id(), &user, now_member.map(|m| m.role));
        now_member.and_then(|m| self.member_info(m)).ok_or_else(|| member_not_found(id))
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

    fn throttled(wait: u64) -> Error {
        let mut e = Error::new(
            ErrorCode::RateLimited,
            format!("too many failed sign-ins for this account or address; retry in {wait} s"),
        );
        e.details = Some(serde_json::Map::from_iter([("retry_after".to_owned(), wait.into())]));
        e
    }

    /// Checks `password` for the account `email` (throttled per account and per address, each
    /// refusal audited): the user as they were when it was checked.
    async fn check_password(&self, facts: &RequestFacts, email: &str, password: String) -> Result<Arc<UserRecord>> {
        let now = self.clock.now();
        let target: String = email.chars().take(MAX_EMAIL_BYTES).collect();
        let refused = |result: &str| Self::install_draft(facts, "anonymous", actions::AUTH_LOGIN, &target, result);
        if email.len() > MAX_EMAIL_BYTES {
            self.audit_install(refused("refused:unauthenticated")).await?;
            return Err(bad_credentials());
        }
        if let Err(wait) = self.throttle.attempt(email, &facts.ip, now) {
            self.audit_install(refused("refused:rate_limited")).await?;
            return Err(Self::throttled(wait));
        }
        let user = self.people.user_by_email(email).filter(|u| u.disabled_at.is_none());
        let hash = user.as_ref().and_then(|u| u.password.clone());
        let ok = self.config.password_work.verify(hash, password).await;
        // The user as they are now: a password change or disabling during the check wins.
        let current = user.as_ref().and_then(|u| self.people.user(&u.id));
        match (ok, user, current) {
            (true, Some(was), Some(now)) if was.updated_at == now.updated_at => {
                self.throttle.succeeded(email, &facts.ip);
                Ok(was)
            }
            _ => {
                self.audit_install(refused("refused:unauthenticated")).await?;
                Err(bad_credentials())
            }
        }
    }

    /// Checks an email and password; throttled per account and per address, audited either way.
    /// Answers the new session's token (for the cookie) and what `GET /v1/auth/session` says.
    pub async fn sign_in(&self, facts: &RequestFacts, req: SignIn) -> Result<(Token, SessionView)> {
        let email = req.email.trim().to_lowercase();
        let user = self.check_password(facts, &email, req.password).await?;
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
        // Refused if the user changed since the password was checked (a new password or
        // disabling ended their sessions meanwhile: this one must not outlive that).
        self.store.insert_session(&record, user.updated_at).await.map_err(|e| match e.code {
            ErrorCode::Conflict => bad_credentials(),
            _ => e,
        })?;
        if !self.people.put_session(record.clone(), user.updated_at) {
            // The user changed between the store's insert and here: the session must not stand.
            self.store.delete_session(&record.id).await?;
            return Err(bad_credentials());
        }
        let view = self.view_session(user, &record, now);
        Ok((token, view))
    }

    fn view_session(&self, user: &UserRecord, session: &SessionRecord, last_seen: Timestamp) -> SessionView {
        let mut tenants = self
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

    /// `GET /v1/auth/tenants`: the tenants the signed-in person can open whose slug or name
    /// contains `text` (all of them without), in slug order, at most `limit` (default 20, at
    /// most 100): the tenant switcher's search. A member's are their memberships (archived
    /// tenants left out); a super-admin's are every tenant, each as `owner` (they have the
    /// operator's reach everywhere). Served from memory.
    pub fn switchable_tenants(
        &self,
        facts: &RequestFacts,
        text: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<SessionTenant>> {
        let signed = self.signed_in(facts)?;
        let text = super::search_text(text)?.map(str::to_lowercase);
        let limit = match limit {
            None => 20,
            Some(n) if (1..=100).contains(&n) => n,
            Some(_) => return Err(Error::invalid_request("`limit` must be between 1 and 100")),
        };
        let entry = |t: &Tenant, role: Role| SessionTenant {
            id: t.id.clone(),
            slug: t.slug.as_str().to_owned(),
            name: t.name.clone(),
            role,
            status: t.status,
        };
        if signed.user.super_admin {
            let found = self.directory.list_tenants(None, text.as_deref(), None, limit);
            return Ok(found.iter().map(|t| entry(t, Role::Owner)).collect());
        }
        let mut found = self
            .people
            .memberships_of(&signed.user.id)
            .iter()
            .filter_map(|(id, role)| {
                let t = self.directory.tenant(id)?;
                let shown = t.status != TenantStatus::Archived
                    && text.as_deref().is_none_or(|text| crate::directory::tenant_matches(&t, text));
                shown.then(|| entry(&t, *role))
            })
            .collect::<Vec<_>>();
        found.sort_by(|a, b| a.slug.cmp(&b.slug));
        found.truncate(limit);
        Ok(found)
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

    /// Whether `actor` (an invitation's maker: `operator`, `key:<id>`, `user:<id>`) may still
    /// grant `role` in `tenant`: an invitation made by a key since revoked, or by a member since
    /// removed or demoted, no longer works.
    fn still_grants(&self, tenant: &Tenant, actor: &str, role: Role) -> bool {
        let needed = role.max(Role::Admin);
        if actor == "operator" {
            return true;
        }
        if let Some(key) = actor.strip_prefix("key:").and_then(KeyId::parse) {
            return self.directory.key(&key).is_some_and(|k| {
                k.tenant_id == tenant.id && k.is_usable(self.clock.now()) && k.role >= needed && k.prefix.is_none()
            });
        }
        let Some(user) = actor.strip_prefix("user:").and_then(UserId::parse).and_then(|u| self.people.user(&u)) else {
            return false;
        };
        user.disabled_at.is_none()
            && (user.super_admin || self.people.role_in(&user.id, &tenant.id).is_some_and(|r| r >= needed))
    }

    /// Accepts an invitation: the person proves the account is theirs (its password), or, for an
    /// email without an account, makes it with its first password; then they are a member and
    /// signed in. An account without a password is the operator's to give one.
    pub async fn accept_invitation(&self, facts: &RequestFacts, req: AcceptInvitation) -> Result<(Token, SessionView)> {
        let token = Token::from_presented(req.token.trim());
        let invalid = || Error::new(ErrorCode::Unauthenticated, "the invitation is unknown, used or expired");
        let id = token.id().and_then(InviteId::parse).ok_or_else(invalid)?;
        let now = self.clock.now();
        let invitation = self.store.get_invitation(&id).await?.ok_or_else(invalid)?;
        if !token.matches(&invitation.hash) || now >= invitation.expires_at {
            return Err(invalid());
        }
        let tenant = self
            .directory
            .tenant(&invitation.tenant_id)
            .filter(|t| t.status != TenantStatus::Archived)
            .filter(|t| self.still_grants(t, &invitation.created_by, invitation.role))
            .ok_or_else(invalid)?;
        let email = invitation.email.clone();
        // Whose account: proven by its password, or a new one (nothing is changed yet).
        let (user, fresh) = match self.people.user_by_email(&email) {
            Some(u) if u.password.is_some() => (self.check_password(facts, &email, req.password).await?, false),
            Some(_) => {
                return Err(Error::new(
                    ErrorCode::Unauthenticated,
                    "this account has no password yet: ask the operator to set one, then accept with it",
                ))
            }
            None => {
                validate_password(&req.password)?;
                let name = match req.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                    Some(n) => validate_name(n)?,
                    None => String::new(),
                };
                let user = UserRecord {
                    id: UserId::generate(),
                    email: email.clone(),
                    name,
                    password: Some(self.config.password_work.hash(req.password).await?),
                    super_admin: false,
                    disabled_at: None,
                    created_at: now,
                    updated_at: now,
                };
                (Arc::new(user), true)
            }
        };
        // Used up first (of two accepting at once, one gets it); given back if a later step fails,
        // so the person can try again.
        if !self.store.delete_invitation(&id).await? {
            return Err(invalid());
        }
        let joined = self.join(facts, &tenant, &invitation, &user, fresh).await;
        if joined.is_err() {
            if let Err(e) = self.store.insert_invitation(&invitation).await {
                return Err(Error::internal(format!("accepting failed, and the invitation was lost: {}", e.message)));
            }
        }
        joined?;
        let actor = format!("user:{}", user.id);
        let target = format!("{email} ({} of {})", invitation.id, tenant.slug);
        self.audit_install(Self::install_draft(facts, &actor, actions::AUTH_ACCEPT, &target, "ok")).await?;
        self.open_session(&user).await
    }

    /// The account made if `fresh`, then the membership an accepted invitation gives.
    async fn join(
        &self,
        facts: &RequestFacts,
        tenant: &Tenant,
        invitation: &InvitationRecord,
        user: &UserRecord,
        fresh: bool,
    ) -> Result<()> {
        let actor = format!("user:{}", user.id);
        if fresh {
            self.store.insert_user(user).await?;
            self.people.put_user(user.clone(), false);
            let target = format!("{} (by accepting {} of {})", user.id, invitation.id, tenant.slug);
            self.audit_install(Self::install_draft(facts, &actor, actions::USER_CREATE, &target, "ok")).await?;
        }
        if self.people.role_in(&user.id, &tenant.id).is_some() {
            return Ok(());
        }
        let member = Membership {
            tenant_id: tenant.id.clone(),
            user_id: user.id.clone(),
            role: invitation.role,
            created_at: self.clock.now(),
            created_by: invitation.created_by.clone(),
        };
        let audit = Self::install_draft(facts, &actor, actions::MEMBER_ADD, user.id.as_str(), "ok");
        let scope = TenantScope::new(tenant);
        match self.insert_member(&scope, &member, audit).await {
            // A member already (made on another node meanwhile): what accepting asked for.
            Err(e) if e.code == ErrorCode::Conflict => {
                let members = self.store.load_members(&scope).await?;
                match members.iter().find(|m| m.user_id == user.id) {
                    Some(m) => {
                        self.people.set_role(&tenant.id, &user.id, Some(m.role));
                        Ok(())
                    }
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// Background upkeep: stores when sessions were last used (at most once a minute each) and
    /// deletes the sessions and invitations that ended.
    pub async fn flush_sessions(&self) -> Result<()> {
        let touched = self.people.touched(60_000);
        if !touched.is_empty() {
            self.store.touch_sessions(&touched).await?;
            self.people.stored(&touched);
        }
        let now = self.clock.now();
        self.store.delete_ended_sessions(now, self.config.sessions.idle_ms).await?;
        self.people.drop_ended(now, &self.config.sessions);
        Ok(())
    }

    /// Re-reads a user and their sessions (another node changed them). Read again while this
    /// node's own changes to the user overtake the read, so no notice's change is lost.
    pub async fn reload_person(&self, user: &UserId) -> Result<()> {
        for _ in 0..20 {
            let seen = self.people.local_changes(user);
            let found = self.store.load_person(user).await?;
            if self.people.apply_reread(user, found, seen) {
                return Ok(());
            }
        }
        Err(Error::internal(format!("this node's own changes to user {user} overtook 20 re-reads in a row")))
    }

    /// The person's user record, for tools that need more than the request's grant.
    pub fn user(&self, id: &UserId) -> Option<Arc<UserRecord>> {
        self.people.user(id)
    }
}
