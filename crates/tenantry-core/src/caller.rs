//! A request becomes a [`Caller`] exactly once, at the edge (DESIGN.md §1): credential → tenant →
//! role → prefix. Tenancy, roles and prefixes are checked here and nowhere else; a
//! [`TenantScope`] for storage is obtained only from a `Caller` or an [`OperatorGrant`].

use crate::activity::TenantActivity;
use crate::directory::{Directory, TenantEntry};
use crate::error::{Error, ErrorCode, Result};
use crate::ids::{SessionId, TenantId};
use crate::model::{AuditDraft, AuditEntry, KeyRecord, Tenant, TenantStatus};
use crate::path::{PathPrefix, TenantPath};
use crate::people::{People, SessionPolicy, Token, UserRecord};
use crate::role::Role;
use crate::secret::{KeySecret, SecretHash};
use crate::slug::DEFAULT_SLUG;
use crate::store::TenantScope;
use crate::tier::{Limits, TierTable};
use crate::time::Timestamp;
use std::sync::Arc;

/// What the edge read off a request, before anything is trusted.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub bearer: Option<String>,
    /// The session cookie's token, when the request carries one (a bearer key wins over it).
    pub session: Option<String>,
    /// Whether the request asks for a change (any method but GET, HEAD and OPTIONS).
    pub changes: bool,
    /// Whether the browser said the request comes from this server's own pages: an `Origin`
    /// naming the request's host, or `Sec-Fetch-Site: same-origin`. A change made with a session
    /// cookie needs it (CSRF).
    pub same_origin: bool,
    /// Whether a browser said the request comes from another site (an `Origin` or
    /// `Sec-Fetch-Site` that is not this server's). Clients that are not browsers send neither.
    pub cross_site: bool,
    /// From a `/t/{slug}/v1/...` path.
    pub path_tenant: Option<String>,
    /// From `X-Tenant-ID` (a slug or an id).
    pub header_tenant: Option<String>,
    pub host: Option<String>,
    pub request_id: String,
    pub ip: String,
}

#[derive(Debug, Clone)]
pub enum Principal {
    Operator,
    Key(Arc<KeyRecord>),
    /// A signed-in person: a member of the tenant with `role` in it, or a super-admin
    /// (`operator`), who has the operator's rights.
    Person(Arc<PersonGrant>),
}

/// What a signed-in person may do in the request's tenant.
#[derive(Debug, Clone)]
pub struct PersonGrant {
    pub user: Arc<UserRecord>,
    pub session: SessionId,
    pub role: Role,
    pub operator: bool,
}

/// An authenticated request, bound to exactly one tenant.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The tenant as it was when the request was authenticated: one consistent view for the
    /// whole request.
    tenant: Arc<Tenant>,
    entry: Arc<TenantEntry>,
    /// The tenant's effective limits, worked out once per request.
    limits: Limits,
    principal: Principal,
    request_id: String,
    ip: String,
}

/// Proof that the caller holds the operator key: what tenant administration requires.
#[derive(Debug, Clone)]
pub struct OperatorGrant {
    /// `operator`, or `user:<id>` for a super-admin.
    actor: String,
    request_id: String,
    ip: String,
}

impl OperatorGrant {
    /// The scope of any tenant, for the operator's administration of it.
    pub fn scope_of(&self, tenant: &Tenant) -> TenantScope {
        TenantScope::new(tenant)
    }
    pub fn audit(&self, action: &str, target: &str, result: &str) -> AuditDraft {
        AuditDraft {
            actor: self.actor.clone(),
            action: action.into(),
            target: target.into(),
            result: result.into(),
            request_id: self.request_id.clone(),
            ip: self.ip.clone(),
        }
    }
}

impl Caller {
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }
    /// The tenant's effective limits (tier and overrides) as of the request's start.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// The tenant's request-path counters (rate, meter, requests).
    pub fn activity(&self) -> &TenantActivity {
        self.entry.activity()
    }
    pub fn scope(&self) -> TenantScope {
        TenantScope::new(&self.tenant)
    }
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
    /// The operator key, or a super-admin person.
    pub fn is_operator(&self) -> bool {
        match &self.principal {
            Principal::Operator => true,
            Principal::Key(_) => false,
            Principal::Person(p) => p.operator,
        }
    }
    /// The signed-in person, when the request came with a session.
    pub fn person(&self) -> Option<&PersonGrant> {
        match &self.principal {
            Principal::Person(p) => Some(p),
            _ => None,
        }
    }
    /// The operator acts with every right of an owner.
    pub fn role(&self) -> Role {
        match &self.principal {
            Principal::Operator => Role::Owner,
            Principal::Key(k) => k.role,
            Principal::Person(p) => p.role,
        }
    }
    pub fn prefix(&self) -> Option<&PathPrefix> {
        match &self.principal {
            Principal::Operator | Principal::Person(_) => None,
            Principal::Key(k) => k.prefix.as_ref(),
        }
    }
    /// Who the audit log names: `operator`, `key:<id>` or `user:<id>`; never a secret.
    pub fn actor(&self) -> String {
        match &self.principal {
            Principal::Operator => "operator".to_owned(),
            Principal::Key(k) => format!("key:{}", k.id),
            Principal::Person(p) => format!("user:{}", p.user.id),
        }
    }

    pub fn operator(&self) -> Result<OperatorGrant> {
        if !self.is_operator() {
            return Err(Error::forbidden("this route needs the operator key or a super-admin"));
        }
        Ok(OperatorGrant { actor: self.actor(), request_id: self.request_id.clone(), ip: self.ip.clone() })
    }

    pub fn require_role(&self, min: Role) -> Result<()> {
        if self.role() >= min {
            Ok(())
        } else {
            Err(Error::forbidden(format!("this needs role {min} or above; the key has role {}", self.role())))
        }
    }

    /// Whether the key's prefix lets it see `path` (listings use this to leave paths out).
    pub fn sees(&self, path: &str) -> bool {
        self.prefix().is_none_or(|p| p.covers(path))
    }

    pub fn require_path(&self, path: &TenantPath) -> Result<()> {
        match self.prefix() {
            Some(p) if !p.covers(path.as_str()) => {
                Err(Error::forbidden(format!("the key is limited to paths under {}", p.as_dir())))
            }
            _ => Ok(()),
        }
    }

    /// When the caller's own key stops working (`None`: never, or the operator).
    pub fn expires_at(&self) -> Option<Timestamp> {
        match &self.principal {
            Principal::Operator | Principal::Person(_) => None,
            Principal::Key(k) => k.expires_at,
        }
    }

    /// Refuses acting on (revoking) a key wider than the caller's own: a stronger role, or a
    /// prefix reaching beyond the caller's. No key acts on a key wider than itself.
    pub fn require_not_narrower_than(&self, key: &KeyRecord) -> Result<()> {
        if key.role > self.role() {
            return Err(Error::forbidden(format!("an {} key cannot revoke an {} key", self.role(), key.role)));
        }
        match self.prefix() {
            Some(own) if !self.reaches_key(key) => Err(Error::forbidden(format!(
                "the key is limited to paths under {}; it cannot act on a key that reaches beyond them",
                own.as_dir()
            ))),
            _ => Ok(()),
        }
    }

    /// Whether a prefixed key may see an audit entry: a file written or deleted under its prefix,
    /// or one it made itself. A key without a prefix sees every entry of its tenant. (A refused
    /// request's target is its URL, `/v1/...`, not a file's path: only done file changes name
    /// paths that a prefix can cover.)
    pub fn sees_audit(&self, entry: &AuditEntry) -> bool {
        match self.prefix() {
            None => true,
            Some(p) => {
                let file_change = matches!(entry.action.as_str(), "file.write" | "file.delete") && entry.result == "ok";
                entry.actor == self.actor() || (file_change && p.covers(&entry.target))
            }
        }
    }

    /// Whether a prefixed key reaches a key at all: it acts on, and sees, only keys whose prefix
    /// lies under its own.
    pub fn reaches_key(&self, key: &KeyRecord) -> bool {
        match (self.prefix(), key.prefix.as_ref()) {
            (None, _) => true,
            (Some(own), Some(theirs)) => theirs.is_within(own),
            (Some(_), None) => false,
        }
    }

    /// Refuses keys limited to a path prefix, for what lies under no path (`what`: e.g. "memory").
    pub fn require_whole_tenant(&self, what: &str) -> Result<()> {
        match self.prefix() {
            Some(p) => Err(Error::forbidden(format!(
                "the key is limited to files under {}; {what} needs a key without a path prefix",
                p.as_dir()
            ))),
            None => Ok(()),
        }
    }

    pub fn audit(&self, action: &str, target: &str, result: &str) -> AuditDraft {
        AuditDraft {
            actor: self.actor(),
            action: action.into(),
            target: target.into(),
            result: result.into(),
            request_id: self.request_id.clone(),
            ip: self.ip.clone(),
        }
    }
}

/// Why authentication failed, and the tenant whose audit log must record it (API.md §8: refused
/// requests are audited, 401 aside).
#[derive(Debug)]
pub struct Refusal {
    pub error: Error,
    /// Boxed: refusals are rare and the common `Ok(Caller)` should stay small.
    /// The key's caller as it would have been (its tenant, limits and counters: the refusal is
    /// charged to that tenant's rate limit and meter) and the audit entry to write there.
    pub audit_in: Option<Box<(Caller, AuditDraft)>>,
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Refusal { error, audit_in: None }
    }
}

/// How tenants may be named besides a tenant key.
#[derive(Debug, Clone, Default)]
pub struct TenantNaming {
    /// `{slug}.{base_domain}` names tenant `slug`.
    pub base_domain: Option<String>,
}

/// A tenant named by a request, before it is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Named {
    SlugOrId(String),
    Domain(String),
}

fn host_without_port(host: &str) -> String {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

impl TenantNaming {
    fn name_in_host(&self, host: &str) -> Option<Named> {
        let host = host_without_port(host);
        if let Some(base) = &self.base_domain {
            if let Some(label) = host.strip_suffix(base.as_str()).and_then(|h| h.strip_suffix('.')) {
                if !label.is_empty() && !label.contains('.') {
                    return Some(Named::SlugOrId(label.to_owned()));
                }
            }
        }
        Some(Named::Domain(host))
    }

    /// Everything the request names, strongest first: path, header, host.
    fn named(&self, facts: &RequestFacts) -> Vec<Named> {
        let mut out = Vec::with_capacity(3);
        if let Some(s) = &facts.path_tenant {
            out.push(Named::SlugOrId(s.clone()));
        }
        if let Some(s) = facts.header_tenant.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            out.push(Named::SlugOrId(s.to_owned()));
        }
        if let Some(n) = facts.host.as_deref().and_then(|h| self.name_in_host(h)) {
            out.push(n);
        }
        out
    }
}

fn names_tenant(named: &Named, tenant: &Tenant) -> bool {
    match named {
        Named::SlugOrId(s) => s == tenant.slug.as_str() || s == tenant.id.as_str(),
        Named::Domain(d) => tenant.domains.iter().any(|x| x == d),
    }
}

fn lookup(dir: &Directory, named: &Named) -> Option<Arc<TenantEntry>> {
    match named {
        Named::SlugOrId(s) => dir.entry_by_slug(s).or_else(|| TenantId::parse(s).and_then(|id| dir.entry(&id))),
        Named::Domain(d) => dir.entry_by_domain(d),
    }
}

/// What authentication consults: the node's in-memory views and settings.
pub struct Authority<'a> {
    pub dir: &'a Directory,
    pub people: &'a People,
    pub naming: &'a TenantNaming,
    pub tiers: &'a TierTable,
    pub operator_hash: &'a SecretHash,
    pub sessions: &'a SessionPolicy,
}

impl Authority<'_> {
    fn caller(&self, entry: Arc<TenantEntry>, principal: Principal, facts: RequestFacts) -> Caller {
        let tenant = entry.tenant();
        Caller {
            limits: self.tiers.limits_of(&tenant),
            tenant,
            entry,
            principal,
            request_id: facts.request_id,
            ip: facts.ip,
        }
    }

    /// The tenant an operator (or a super-admin) names: the first name given wins; a host that
    /// is no tenant's name is ignored; nothing named is the `default` tenant.
    fn operator_tenant(&self, named: &[Named]) -> Result<Arc<TenantEntry>> {
        for n in named {
            match (n, lookup(self.dir, n)) {
                (_, Some(t)) => return Ok(t),
                (Named::Domain(_), None) => continue,
                (Named::SlugOrId(s), None) => return Err(Error::tenant_not_found(s)),
            }
        }
        self.dir.entry_by_slug(DEFAULT_SLUG).ok_or_else(|| Error::tenant_not_found(DEFAULT_SLUG))
    }
}

/// Turns a request's facts into a [`Caller`] (API.md §3, §11). Pure: the caller writes any audit.
pub fn authenticate(a: &Authority<'_>, facts: RequestFacts, now: Timestamp) -> Result<Caller, Refusal> {
    let named = a.naming.named(&facts);
    let Some(bearer) = facts.bearer.clone() else {
        return match facts.session.clone() {
            Some(token) => authenticate_person(a, &named, &token, facts, now),
            None => Err(Error::unauthenticated().into()),
        };
    };
    let secret = KeySecret::from_presented(&bearer);

    if let Some(key_id) = secret.key_id() {
        let (key, tenant, entry) = a
            .dir
            .key_with_tenant(&key_id)
            .filter(|(k, _, _)| k.hash.matches(&bearer) && k.is_usable(now))
            .ok_or_else(Error::unauthenticated)?;
        if tenant.status == TenantStatus::Archived {
            return Err(Error::unauthenticated().into());
        }
        let caller = a.caller(entry, Principal::Key(key), facts);
        // A host that is not a tenant's name (an IP, `localhost`) names nothing: only explicit
        // names other than the key's own tenant are a mismatch.
        let mismatch = named.iter().find(|n| match n {
            Named::Domain(d) => a.dir.tenant_by_domain(d).is_some_and(|t| t.id != tenant.id),
            other => !names_tenant(other, &tenant),
        });
        if mismatch.is_some() {
            let audit = caller.audit("auth.tenant_mismatch", "", "refused:tenant_mismatch");
            return Err(Refusal {
                error: Error::new(
                    ErrorCode::TenantMismatch,
                    "this key belongs to another tenant than the one the request names",
                ),
                audit_in: Some(Box::new((caller, audit))),
            });
        }
        return refuse_suspended(caller);
    }

    if !a.operator_hash.matches(&bearer) {
        return Err(Error::unauthenticated().into());
    }
    let entry = a.operator_tenant(&named)?;
    Ok(a.caller(entry, Principal::Operator, facts))
}

/// A suspended tenant refuses every request but the operator's, audited in its log.
fn refuse_suspended(caller: Caller) -> Result<Caller, Refusal> {
    if caller.tenant.status != TenantStatus::Suspended {
        return Ok(caller);
    }
    let audit = caller.audit("auth.suspended", "", "refused:tenant_suspended");
    Err(Refusal {
        error: Error::new(ErrorCode::TenantSuspended, format!("tenant '{}' is suspended", caller.tenant.slug)),
        audit_in: Some(Box::new((caller, audit))),
    })
}

/// A session cookie: the person, then the tenant among their memberships. A tenant they are not
/// a member of answers as one that does not exist (API.md §11).
fn authenticate_person(
    a: &Authority<'_>,
    named: &[Named],
    token: &str,
    facts: RequestFacts,
    now: Timestamp,
) -> Result<Caller, Refusal> {
    let signed = a.people.check(&Token::from_presented(token), now, a.sessions).ok_or_else(Error::unauthenticated)?;
    if facts.changes && !facts.same_origin {
        return Err(crate::people::cross_origin_change().into());
    }
    let grant = |role: Role, operator: bool| {
        Principal::Person(Arc::new(PersonGrant {
            user: signed.user.clone(),
            session: signed.session.record.id.clone(),
            role,
            operator,
        }))
    };
    if signed.user.super_admin {
        let entry = a.operator_tenant(named)?;
        return Ok(a.caller(entry, grant(Role::Owner, true), facts));
    }
    let member = |entry: &Arc<TenantEntry>| {
        let t = entry.tenant();
        let role = a.people.role_in(&signed.user.id, &t.id)?;
        (t.status != TenantStatus::Archived).then_some(role)
    };
    let mut chosen = None;
    for n in named {
        let name = match n {
            Named::SlugOrId(s) | Named::Domain(s) => s,
        };
        match (n, lookup(a.dir, n)) {
            (_, Some(entry)) => {
                let role = member(&entry).ok_or_else(|| Error::tenant_not_found(name))?;
                chosen = Some((entry, role));
                break;
            }
            (Named::Domain(_), None) => continue,
            (Named::SlugOrId(_), None) => return Err(Error::tenant_not_found(name).into()),
        }
    }
    let (entry, role) = match chosen {
        Some(c) => c,
        None => {
            let mine: Vec<(Arc<TenantEntry>, Role)> = a
                .people
                .memberships_of(&signed.user.id)
                .into_iter()
                .filter_map(|(t, _)| a.dir.entry(&t))
                .filter_map(|e| member(&e).map(|r| (e, r)))
                .collect();
            match mine.len() {
                1 => mine.into_iter().next().expect("one"),
                0 => return Err(Error::new(ErrorCode::TenantNotFound, "you are not a member of any tenant").into()),
                n => {
                    return Err(Error::invalid_request(format!(
                        "you are a member of {n} tenants: name one with /t/{{slug}}/v1/... or the X-Tenant-ID header"
                    ))
                    .into())
                }
            }
        }
    };
    refuse_suspended(a.caller(entry, grant(role, false), facts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::KeyId;
    use crate::slug::Slug;

    fn tenant(slug: &str, domains: &[&str]) -> Tenant {
        let mut t = Tenant::new(Slug::parse(slug).unwrap(), slug, "free", Timestamp::from_millis(0));
        t.domains = domains.iter().map(|d| d.to_string()).collect();
        t
    }

    struct World {
        dir: Directory,
        people: People,
        naming: TenantNaming,
        op: KeySecret,
        acme_key: KeySecret,
        acme: Tenant,
        globex: Tenant,
    }

    fn world() -> World {
        let dir = Directory::default();
        let default = tenant("default", &[]);
        let acme = tenant("acme", &["files.acme.test"]);
        let globex = tenant("globex", &["globex.test"]);
        let key_id = KeyId::generate();
        let acme_key = KeySecret::mint(&key_id);
        let rec = KeyRecord {
            id: key_id,
            tenant_id: acme.id.clone(),
            name: "k".into(),
            role: Role::Writer,
            prefix: None,
            hash: acme_key.hash(),
            created_at: Timestamp::from_millis(0),
            created_by: "operator".into(),
            expires_at: Some(Timestamp::from_millis(10_000)),
            revoked_at: None,
        };
        dir.load(vec![default, acme.clone(), globex.clone()], vec![rec]);
        World {
            dir,
            people: People::default(),
            naming: TenantNaming { base_domain: Some("tenantry.test".into()) },
            op: KeySecret::mint_operator(),
            acme_key,
            acme,
            globex,
        }
    }

    fn facts(bearer: &KeySecret) -> RequestFacts {
        RequestFacts { bearer: Some(bearer.expose().to_owned()), ..Default::default() }
    }

    fn auth(w: &World, f: RequestFacts) -> Result<Caller, Refusal> {
        auth_at(w, f, Timestamp::from_millis(5))
    }

    fn auth_at(w: &World, f: RequestFacts, now: Timestamp) -> Result<Caller, Refusal> {
        let (tiers, op) = (TierTable::default(), w.op.hash());
        let a = Authority {
            dir: &w.dir,
            people: &w.people,
            naming: &w.naming,
            tiers: &tiers,
            operator_hash: &op,
            sessions: &SessionPolicy::default(),
        };
        authenticate(&a, f, now)
    }

    #[test]
    fn a_tenant_key_decides_the_tenant() {
        let w = world();
        let c = auth(&w, facts(&w.acme_key)).unwrap();
        assert_eq!(c.tenant().slug.as_str(), "acme");
        assert_eq!(c.role(), Role::Writer);
        let own = RequestFacts {
            path_tenant: Some("acme".into()),
            host: Some("acme.tenantry.test:7070".into()),
            ..facts(&w.acme_key)
        };
        assert_eq!(auth(&w, own).unwrap().tenant().id, w.acme.id);
    }

    #[test]
    fn a_tenant_key_naming_another_tenant_any_way_is_a_mismatch_audited_in_its_own_tenant() {
        let w = world();
        for f in [
            RequestFacts { path_tenant: Some("globex".into()), ..facts(&w.acme_key) },
            RequestFacts { header_tenant: Some("globex".into()), ..facts(&w.acme_key) },
            RequestFacts { header_tenant: Some(w.globex.id.to_string()), ..facts(&w.acme_key) },
            RequestFacts { header_tenant: Some("no-such-tenant".into()), ..facts(&w.acme_key) },
            RequestFacts { host: Some("globex.tenantry.test".into()), ..facts(&w.acme_key) },
            RequestFacts { host: Some("globex.test".into()), ..facts(&w.acme_key) },
        ] {
            let r = auth(&w, f).unwrap_err();
            assert_eq!(r.error.code, ErrorCode::TenantMismatch);
            assert_eq!(r.audit_in.unwrap().0.tenant().id, w.acme.id);
        }
    }

    #[test]
    fn the_operator_names_a_tenant_by_path_then_header_then_host_else_default() {
        let w = world();
        let slug = |f| auth(&w, f).unwrap().tenant().slug.to_string();
        assert_eq!(slug(facts(&w.op)), "default");
        assert_eq!(slug(RequestFacts { host: Some("localhost:7070".into()), ..facts(&w.op) }), "default");
        assert_eq!(slug(RequestFacts { host: Some("globex.test".into()), ..facts(&w.op) }), "globex");
        assert_eq!(slug(RequestFacts { host: Some("ACME.tenantry.test".into()), ..facts(&w.op) }), "acme");
        assert_eq!(
            slug(RequestFacts {
                header_tenant: Some("globex".into()),
                host: Some("acme.tenantry.test".into()),
                ..facts(&w.op)
            }),
            "globex"
        );
        assert_eq!(
            slug(RequestFacts {
                path_tenant: Some("acme".into()),
                header_tenant: Some("globex".into()),
                ..facts(&w.op)
            }),
            "acme"
        );
        let missing = auth(&w, RequestFacts { header_tenant: Some("nope".into()), ..facts(&w.op) }).unwrap_err();
        assert_eq!(missing.error.code, ErrorCode::TenantNotFound);
    }

    #[test]
    fn unknown_expired_and_missing_keys_are_unauthenticated() {
        let w = world();
        let none = RequestFacts::default();
        assert_eq!(auth(&w, none).unwrap_err().error.code, ErrorCode::Unauthenticated);
        let forged = KeySecret::mint(&w.acme_key.key_id().unwrap());
        assert_eq!(auth(&w, facts(&forged)).unwrap_err().error.code, ErrorCode::Unauthenticated);
        let late = auth_at(&w, facts(&w.acme_key), Timestamp::from_millis(10_000));
        assert_eq!(late.unwrap_err().error.code, ErrorCode::Unauthenticated);
    }

    #[test]
    fn suspended_tenants_refuse_keys_and_archived_ones_do_not_know_them() {
        let w = world();
        let mut t = w.acme.clone();
        t.status = TenantStatus::Suspended;
        w.dir.put_tenant(t.clone());
        assert_eq!(auth(&w, facts(&w.acme_key)).unwrap_err().error.code, ErrorCode::TenantSuspended);
        t.status = TenantStatus::Archived;
        w.dir.put_tenant(t);
        assert_eq!(auth(&w, facts(&w.acme_key)).unwrap_err().error.code, ErrorCode::Unauthenticated);
    }

    #[test]
    fn a_key_reaches_its_tenants_current_record_and_the_same_counters_across_updates() {
        let w = world();
        let c = auth(&w, facts(&w.acme_key)).unwrap();
        c.activity().count_request();
        let call = crate::usage::Counters { api_calls: 1, ..Default::default() };
        assert_eq!(c.activity().record(7, 0, call), (0, 1));
        let mut renamed = w.acme.clone();
        renamed.name = "Acme Renamed".into();
        w.dir.put_tenant(renamed);
        let again = auth(&w, facts(&w.acme_key)).unwrap();
        assert_eq!(again.tenant().name, "Acme Renamed", "the key sees the update at once");
        assert_eq!(c.tenant().name, w.acme.name, "a request keeps the view it started with");
        assert_eq!(again.activity().requests(), 1);
        assert_eq!(again.activity().month_calls(0), 1);
        // The operator acting on the tenant reaches the same counters.
        let op = auth(&w, RequestFacts { path_tenant: Some("acme".into()), ..facts(&w.op) }).unwrap();
        op.activity().count_request();
        assert_eq!(again.activity().requests(), 2);
        // Another tenant's are its own.
        let globex = auth(&w, RequestFacts { path_tenant: Some("globex".into()), ..facts(&w.op) }).unwrap();
        assert_eq!(globex.activity().requests(), 0);
        let mut seen = Vec::new();
        w.dir.for_each_activity(|id, a| seen.push((id.clone(), a.requests())));
        seen.sort();
        let mut want = vec![(w.acme.id.clone(), 2), (w.globex.id.clone(), 0)];
        want.extend(w.dir.tenant_by_slug("default").map(|t| (t.id.clone(), 0)));
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_purged_tenant_takes_its_keys_and_counters_and_a_key_needs_its_tenant() {
        let w = world();
        let c = auth(&w, facts(&w.acme_key)).unwrap();
        c.activity().count_request();
        let key = (*w.dir.key(&w.acme_key.key_id().unwrap()).unwrap()).clone();
        w.dir.remove_tenant(&w.acme.id);
        assert_eq!(auth(&w, facts(&w.acme_key)).unwrap_err().error.code, ErrorCode::Unauthenticated);
        assert!(w.dir.entry(&w.acme.id).is_none());
        assert!(w.dir.key(&key.id).is_none());
        // A key whose tenant is not in the directory is not indexed.
        w.dir.put_key(key.clone());
        assert!(w.dir.key(&key.id).is_none());
        // Back (e.g. a reload): fresh counters, and the key works again once put.
        w.dir.put_tenant(w.acme.clone());
        w.dir.put_key(key);
        let back = auth(&w, facts(&w.acme_key)).unwrap();
        assert_eq!(back.activity().requests(), 0);
        assert_eq!(back.tenant().id, w.acme.id);
    }

    #[test]
    fn prefixes_and_roles_are_checked_here() {
        let w = world();
        let mut rec = (*w.dir.key(&w.acme_key.key_id().unwrap()).unwrap()).clone();
        rec.prefix = Some(PathPrefix::parse("/docs").unwrap());
        rec.role = Role::Reader;
        w.dir.put_key(rec);
        let c = auth(&w, facts(&w.acme_key)).unwrap();
        assert!(c.require_path(&TenantPath::parse("/docs/a").unwrap()).is_ok());
        assert_eq!(c.require_path(&TenantPath::parse("/docs2").unwrap()).unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(c.require_role(Role::Writer).unwrap_err().code, ErrorCode::Forbidden);
        assert!(c.operator().is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = Option<String>> {
            prop_oneof![
                Just(None),
                Just(Some("acme".to_owned())),
                Just(Some("globex".to_owned())),
                Just(Some("default".to_owned())),
                "[a-z0-9.:\\[\\]-]{0,30}".prop_map(Some),
                "\\PC{0,20}".prop_map(Some),
            ]
        }

        fn host() -> impl Strategy<Value = Option<String>> {
            prop_oneof![
                Just(None),
                Just(Some("acme.tenantry.test".to_owned())),
                Just(Some("globex.test:443".to_owned())),
                Just(Some("files.acme.test".to_owned())),
                Just(Some("127.0.0.1:7070".to_owned())),
                Just(Some("[::1]:7070".to_owned())),
                "[a-zA-Z0-9.:\\[\\]-]{0,40}".prop_map(Some),
            ]
        }

        proptest! {
            /// Whatever a request names, a tenant key acts on its own tenant or is refused.
            #[test]
            fn a_tenant_key_never_reaches_another_tenant(p in name(), h in name(), host in host()) {
                let w = world();
                let facts = RequestFacts { path_tenant: p, header_tenant: h, host, ..facts(&w.acme_key) };
                match auth(&w, facts) {
                    Ok(c) => prop_assert_eq!(&c.tenant().id, &w.acme.id),
                    Err(r) => prop_assert_eq!(r.error.code, ErrorCode::TenantMismatch),
                }
            }

            /// The operator gets the tenant it named (path, then header, then host) or a 404.
            #[test]
            fn the_operator_gets_what_it_names_or_not_found(p in name(), h in name(), host in host()) {
                let w = world();
                let facts = RequestFacts { path_tenant: p.clone(), header_tenant: h.clone(), host, ..facts(&w.op) };
                match auth(&w, facts) {
                    Ok(c) => {
                        let first = p.or(h.filter(|h| !h.trim().is_empty()));
                        if let Some(named) = first {
                            prop_assert!(named.trim() == c.tenant().slug.as_str() || named.trim() == c.tenant().id.as_str());
                        }
                    }
                    Err(r) => prop_assert_eq!(r.error.code, ErrorCode::TenantNotFound),
                }
            }
        }
    }

    /// Ada: admin of acme, not of globex; a session minted for her.
    fn signed_in(w: &World, super_admin: bool) -> (crate::people::UserRecord, String) {
        use crate::ids::{SessionId, UserId};
        use crate::people::{SessionRecord, UserRecord};
        let ada = UserRecord {
            id: UserId::generate(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
            password: None,
            super_admin,
            disabled_at: None,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        };
        let id = SessionId::generate();
        let token = Token::mint(id.as_str());
        let session = SessionRecord {
            id,
            user_id: ada.id.clone(),
            hash: token.hash(),
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(1_000_000),
            last_seen_at: Timestamp::from_millis(0),
        };
        let member = crate::people::Membership {
            tenant_id: w.acme.id.clone(),
            user_id: ada.id.clone(),
            role: Role::Admin,
            created_at: Timestamp::from_millis(0),
            created_by: "operator".into(),
        };
        w.people.load(vec![ada.clone()], vec![session], vec![member]);
        (ada, token.expose().to_owned())
    }

    fn with_session(token: &str) -> RequestFacts {
        RequestFacts { session: Some(token.to_owned()), ..Default::default() }
    }

    #[test]
    fn a_person_reaches_only_the_tenants_they_belong_to_with_their_role_there() {
        let w = world();
        let (ada, token) = signed_in(&w, false);
        // Her only tenant needs no naming.
        let c = auth(&w, with_session(&token)).unwrap();
        assert_eq!((c.tenant().slug.as_str(), c.role(), c.actor()), ("acme", Role::Admin, format!("user:{}", ada.id)));
        assert!(!c.is_operator());
        assert_eq!(c.operator().unwrap_err().code, ErrorCode::Forbidden);
        let named = |f: RequestFacts| auth(&w, f).map(|c| c.tenant().slug.as_str().to_owned());
        assert_eq!(named(RequestFacts { path_tenant: Some("acme".into()), ..with_session(&token) }).unwrap(), "acme");
        // Another tenant, by slug, id or domain, is as unknown as a tenant that does not exist.
        for other in [
            RequestFacts { path_tenant: Some("globex".into()), ..with_session(&token) },
            RequestFacts { header_tenant: Some(w.globex.id.to_string()), ..with_session(&token) },
            RequestFacts { host: Some("globex.test".into()), ..with_session(&token) },
            RequestFacts { path_tenant: Some("nope".into()), ..with_session(&token) },
        ] {
            assert_eq!(named(other).unwrap_err().error.code, ErrorCode::TenantNotFound);
        }
        // A forged or unknown token is unauthenticated; a bearer key wins over the cookie.
        let forged = format!("{}.{}", token.split('.').next().unwrap(), "a".repeat(64));
        assert_eq!(auth(&w, with_session(&forged)).unwrap_err().error.code, ErrorCode::Unauthenticated);
        let both = RequestFacts { bearer: Some(w.acme_key.expose().into()), ..with_session(&token) };
        assert!(matches!(auth(&w, both).unwrap().principal(), Principal::Key(_)));
        // Removed from acme: refused at once.
        w.people.set_role(&w.acme.id, &ada.id, None);
        assert_eq!(auth(&w, with_session(&token)).unwrap_err().error.code, ErrorCode::TenantNotFound);
        // In two tenants, one must be named.
        w.people.set_role(&w.acme.id, &ada.id, Some(Role::Reader));
        w.people.set_role(&w.globex.id, &ada.id, Some(Role::Writer));
        assert_eq!(auth(&w, with_session(&token)).unwrap_err().error.code, ErrorCode::InvalidRequest);
        let g = auth(&w, RequestFacts { path_tenant: Some("globex".into()), ..with_session(&token) }).unwrap();
        assert_eq!(g.role(), Role::Writer);
    }

    #[test]
    fn a_change_with_a_session_needs_a_same_origin_request() {
        let w = world();
        let (_, token) = signed_in(&w, false);
        let change = RequestFacts { changes: true, ..with_session(&token) };
        let refused = auth(&w, change.clone()).unwrap_err().error;
        assert_eq!(refused.code, ErrorCode::Forbidden);
        assert!(refused.message.contains("same-origin"), "{}", refused.message);
        assert!(auth(&w, RequestFacts { same_origin: true, ..change }).is_ok());
        // A key needs no Origin: only cookies ride along on cross-site requests.
        assert!(auth(&w, RequestFacts { changes: true, ..facts(&w.acme_key) }).is_ok());
    }

    #[test]
    fn a_super_admin_has_the_operators_reach_and_is_named_in_the_audit() {
        let w = world();
        let (ada, token) = signed_in(&w, true);
        let c = auth(&w, RequestFacts { path_tenant: Some("globex".into()), ..with_session(&token) }).unwrap();
        assert_eq!((c.tenant().slug.as_str(), c.role()), ("globex", Role::Owner));
        let grant = c.operator().unwrap();
        assert_eq!(grant.audit("tenant.create", "x", "ok").actor, format!("user:{}", ada.id));
        assert_eq!(auth(&w, with_session(&token)).unwrap().tenant().slug.as_str(), "default");
    }

    #[test]
    fn a_member_of_a_suspended_tenant_is_refused_and_audited_there() {
        let w = world();
        let (_, token) = signed_in(&w, false);
        let mut t = w.acme.clone();
        t.status = TenantStatus::Suspended;
        w.dir.put_tenant(t.clone());
        let r = auth(&w, with_session(&token)).unwrap_err();
        assert_eq!(r.error.code, ErrorCode::TenantSuspended);
        assert_eq!(r.audit_in.unwrap().1.action, "auth.suspended");
        t.status = TenantStatus::Archived;
        w.dir.put_tenant(t);
        assert_eq!(auth(&w, with_session(&token)).unwrap_err().error.code, ErrorCode::TenantNotFound);
    }
}
