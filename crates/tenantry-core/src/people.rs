//! People (API.md §11): users, their memberships of tenants, and their sessions.
//!
//! A user is global to the install; a membership gives a user a role in one tenant (stored with
//! the tenant's rows, like its keys, so it moves and is purged with them); a session is a signed-in
//! browser. [`People`] holds all three in memory, as the [`crate::directory::Directory`] holds
//! keys, so checking a session costs one hash-map lookup and one SHA-256, no database round trip.
//! The store is the truth; the service updates this view after each committed change, and where
//! several nodes share the store, re-reads a person when the store says another node changed them.
//!
//! Secrets: a password is kept only as an argon2id hash ([`PasswordHash`]); a session token and an
//! invitation's token, 256 random bits each, only as their SHA-256 ([`Token`]). Invitations are
//! read from the store when accepted (rare), not held in memory.

use crate::error::{Error, ErrorCode, Result};
use crate::ids::{InviteId, SessionId, TenantId, UserId};
use crate::role::Role;
use crate::secret::SecretHash;
use crate::time::Timestamp;
use rand::RngCore;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A person, as stored. `password` is `None` for a user the operator created without one: they
/// cannot sign in until the operator sets one.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: UserId,
    /// Lower-cased; unique across the install.
    pub email: String,
    pub name: String,
    pub password: Option<PasswordHash>,
    pub super_admin: bool,
    pub disabled_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl UserRecord {
    pub fn info(&self) -> UserInfo {
        UserInfo {
            id: self.id.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
            super_admin: self.super_admin,
            has_password: self.password.is_some(),
            disabled: self.disabled_at.is_some(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A user as the API shows them: never a password or its hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub super_admin: bool,
    /// False for a user created without a password (who cannot sign in yet).
    pub has_password: bool,
    pub disabled: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

/// A user's role in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub role: Role,
    pub created_at: Timestamp,
    pub created_by: String,
}

/// A member as `GET /v1/members` lists them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberInfo {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub has_password: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    pub created_by: String,
}

/// An invitation to join a tenant, as stored: only its token's hash. Accepting it (with the
/// token) makes the membership: the person consents, and proves the account is theirs (its
/// password, or a new account's first one). Invitations belong to the install, like users: the
/// person accepting names no tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct InvitationRecord {
    pub id: InviteId,
    pub tenant_id: TenantId,
    /// Lower-cased, as users' emails.
    pub email: String,
    pub role: Role,
    pub hash: SecretHash,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub created_by: String,
}

impl InvitationRecord {
    pub fn info(&self) -> PendingInvitation {
        PendingInvitation {
            id: self.id.clone(),
            email: self.email.clone(),
            role: self.role,
            created_at: self.created_at,
            expires_at: self.expires_at,
            created_by: self.created_by.clone(),
        }
    }
}

/// An invitation not yet accepted, as `GET /v1/members` lists it (never its token).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PendingInvitation {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: InviteId,
    pub email: String,
    pub role: Role,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
    pub created_by: String,
}

/// A signed-in browser, as stored: only the token's hash.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    pub hash: SecretHash,
    pub created_at: Timestamp,
    /// The absolute end, whatever the activity.
    pub expires_at: Timestamp,
    /// The last request seen with it (flushed to the store now and then; see [`People::touched`]).
    pub last_seen_at: Timestamp,
}

/// Sessions one user may hold at once; signing in once more ends the oldest.
pub const MAX_SESSIONS_PER_USER: usize = 32;

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle_ms: i64,
    /// A session ends this long after sign-in, used or not.
    pub absolute_ms: i64,
    /// How long an invitation link works.
    pub invite_ms: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        const HOUR: i64 = 3_600_000;
        SessionPolicy { idle_ms: 24 * HOUR, absolute_ms: 14 * 24 * HOUR, invite_ms: 7 * 24 * HOUR }
    }
}

// ---- secrets ------------------------------------------------------------------------------------

/// The argon2id parameters of new password hashes: OWASP's first recommendation (19 MiB, two
/// passes, one lane). A hash records its own parameters, so raising these later still verifies
/// the old ones.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
pub const ARGON2_PASSES: u32 = 2;
pub const ARGON2_LANES: u32 = 1;

fn argon2() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)
        .expect("the argon2 parameters are within its bounds");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// A password's argon2id hash in PHC string form (`$argon2id$v=19$m=...`): salt and parameters
/// inside. Hashing and verifying take tens of milliseconds of CPU on purpose: callers on an async
/// runtime run them on a blocking thread. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Hashes a password that [`validate_password`] accepted.
    pub fn new(password: &str) -> Result<PasswordHash> {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| PasswordHash(h.to_string()))
            .map_err(|e| Error::internal(format!("hashing a password: {e}")))
    }

    /// A hash read back from storage (its form is checked when it is verified).
    pub fn from_stored(phc: String) -> PasswordHash {
        PasswordHash(phc)
    }

    pub fn as_stored(&self) -> &str {
        &self.0
    }

    /// Whether `password` is the one hashed; false for a damaged hash.
    pub fn verify(&self, password: &str) -> bool {
        use argon2::password_hash::{PasswordHash as Phc, PasswordVerifier};
        Phc::new(&self.0).is_ok_and(|phc| argon2().verify_password(password.as_bytes(), &phc).is_ok())
    }

    /// Spends what a verification spends, for a sign-in whose account does not exist (or has
    /// no password), so its answer takes as long as a wrong password's.
    pub fn verify_nothing(password: &str) {
        static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
        let dummy = DUMMY.get_or_init(|| PasswordHash::new("no account has this password").expect("hashing"));
        let _ = dummy.verify(password);
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// Passwords: 8 to 1,024 characters (longer ones only cost hashing time), not all blank.
pub fn validate_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < 8 {
        return Err(Error::invalid_request("`password` must be at least 8 characters"));
    }
    if n > 1024 {
        return Err(Error::invalid_request("`password` must be at most 1024 characters"));
    }
    if password.trim().is_empty() {
        return Err(Error::invalid_request("`password` must not be only spaces"));
    }
    Ok(())
}

/// An email address as an account name: trimmed and lower-cased, one `@` with something on each
/// side, a dot in the domain, at most 254 bytes, no spaces or control characters. (Whether it
/// receives mail is not checked: Tenantry sends none.)
pub fn normalize_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let bad = || Error::invalid_request(format!("invalid `email` {email:?}: use an address such as ada@example.com"));
    if e.len() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = e.split_once('@').ok_or_else(bad)?;
    let domain_ok = domain.contains('.')
        && !domain.contains('@')
        && domain.split('.').all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(bad());
    }
    Ok(e)
}

/// A session or invitation token: `<id>.<64 hex>`, where `id` names the session (or the
/// invitation), so checking one is a lookup by id and one constant-time comparison of hashes.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn mint(id: &str) -> Token {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Token(format!("{id}.{}", hex::encode(bytes)))
    }
    pub fn from_presented(s: &str) -> Token {
        Token(s.to_owned())
    }
    /// The id part, if the token has the shape.
    pub fn id(&self) -> Option<&str> {
        let (id, secret) = self.0.split_once('.')?;
        (secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    }
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
    pub fn matches(&self, hash: &SecretHash) -> bool {
        hash.matches(&self.0)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where password hashing runs: argon2id takes tens of milliseconds of CPU, which an async
/// runtime's worker must not spend (the server runs it on a blocking thread; see
/// `tenantry-http`). The core has no runtime, so it is handed one.
#[async_trait::async_trait]
pub trait PasswordWork: Send + Sync + fmt::Debug {
    async fn hash(&self, password: String) -> Result<PasswordHash>;
    /// Whether `password` matches `hash`; with no hash, spends the same time and says no.
    async fn verify(&self, hash: Option<PasswordHash>, password: String) -> bool;
}

/// Hashes on the calling thread: for tests and tools that run no server.
#[derive(Debug, Default)]
pub struct InlinePasswordWork;

#[async_trait::async_trait]
impl PasswordWork for InlinePasswordWork {
    async fn hash(&self, password: String) -> Result<PasswordHash> {
        PasswordHash::new(&password)
    }
    async fn verify(&self, hash: Option<PasswordHash>, password: String) -> bool {
        match hash {
            Some(h) => h.verify(&password),
            None => {
                PasswordHash::verify_nothing(&password);
                false
            }
        }
    }
}

// ---- the in-memory view ---------------------------------------------------------------------------

/// A session a node knows, with when it was last used here.
#[derive(Debug)]
pub struct LiveSession {
    pub record: SessionRecord,
    last_seen: AtomicI64,
    /// The last-seen time the store holds (what [`People::touched`] compares with).
    stored: AtomicI64,
}

impl LiveSession {
    fn new(record: SessionRecord) -> LiveSession {
        let seen = record.last_seen_at.millis();
        LiveSession { record, last_seen: AtomicI64::new(seen), stored: AtomicI64::new(seen) }
    }
    pub fn last_seen(&self) -> Timestamp {
        Timestamp::from_millis(self.last_seen.load(Ordering::Relaxed))
    }
    /// Whether it still works at `now` under `policy`.
    pub fn is_live(&self, now: Timestamp, policy: &SessionPolicy) -> bool {
        now < self.record.expires_at && now.millis() - self.last_seen().millis() < policy.idle_ms
    }
}

/// A signed-in person as authentication found them.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: Arc<UserRecord>,
    pub session: Arc<LiveSession>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<UserId, Arc<UserRecord>>,
    by_email: HashMap<String, UserId>,
    sessions: HashMap<SessionId, Arc<LiveSession>>,
    /// Each user's roles, by tenant.
    roles: HashMap<UserId, BTreeMap<TenantId, Role>>,
    /// Each tenant's members (for replacing a tenant's memberships after a re-read).
    members: HashMap<TenantId, BTreeSet<UserId>>,
    /// Changes this node put per user (see [`People::apply_reread`]).
    local: HashMap<UserId, u64>,
    /// Membership changes this node put per tenant (see [`People::replace_members`]).
    local_members: HashMap<TenantId, u64>,
}

impl Inner {
    fn put_user(&mut self, user: UserRecord) {
        if let Some(old) = self.users.get(&user.id) {
            if old.email != user.email {
                self.by_email.remove(&old.email);
            }
        }
        self.by_email.insert(user.email.clone(), user.id.clone());
        self.users.insert(user.id.clone(), Arc::new(user));
    }
    /// Takes every membership of `tenant` away.
    fn clear_members(&mut self, tenant: &TenantId) {
        let old: Vec<UserId> = self.members.get(tenant).map(|m| m.iter().cloned().collect()).unwrap_or_default();
        for user in old {
            self.set_role(tenant, &user, None);
        }
    }

    fn set_role(&mut self, tenant: &TenantId, user: &UserId, role: Option<Role>) {
        match role {
            Some(r) => {
                self.roles.entry(user.clone()).or_default().insert(tenant.clone(), r);
                self.members.entry(tenant.clone()).or_default().insert(user.clone());
            }
            None => {
                if let Some(r) = self.roles.get_mut(user) {
                    r.remove(tenant);
                }
                if let Some(m) = self.members.get_mut(tenant) {
                    m.remove(user);
                }
            }
        }
    }
}

/// Users, memberships and sessions, in memory (see the module's doc).
#[derive(Default)]
pub struct People {
    inner: RwLock<Inner>,
}

impl People {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces everything (at start, and after the store's feed may have missed changes).
    pub fn load(&self, users: Vec<UserRecord>, sessions: Vec<SessionRecord>, members: Vec<Membership>) {
        let mut inner = Inner::default();
        for u in users {
            inner.put_user(u);
        }
        for s in sessions {
            inner.sessions.insert(s.id.clone(), Arc::new(LiveSession::new(s)));
        }
        for m in members {
            inner.set_role(&m.tenant_id, &m.user_id, Some(m.role));
        }
        let mut current = self.write();
        inner.local = std::mem::take(&mut current.local);
        inner.local_members = std::mem::take(&mut current.local_members);
        *current = inner;
    }

    /// Checks a presented session token at `now`: the person and their session, and marks it
    /// used. `None` for an unknown, ended or expired session, or a disabled user.
    pub fn check(&self, token: &Token, now: Timestamp, policy: &SessionPolicy) -> Option<SignedIn> {
        let id = SessionId::parse(token.id()?)?;
        let inner = self.read();
        let session = inner.sessions.get(&id)?;
        if !token.matches(&session.record.hash) || !session.is_live(now, policy) {
            return None;
        }
        let user = inner.users.get(&session.record.user_id)?;
        if user.disabled_at.is_some() {
            return None;
        }
        session.last_seen.fetch_max(now.millis(), Ordering::Relaxed);
        Some(SignedIn { user: user.clone(), session: session.clone() })
    }

    /// A user's sessions, oldest first.
    pub fn sessions_of(&self, user: &UserId) -> Vec<SessionId> {
        let inner = self.read();
        let mut mine: Vec<&Arc<LiveSession>> = inner.sessions.values().filter(|s| &s.record.user_id == user).collect();
        mine.sort_by_key(|s| (s.record.created_at, s.record.id.clone()));
        mine.into_iter().map(|s| s.record.id.clone()).collect()
    }

    /// Whether session `id` still exists here (an SSE stream opened with it checks this).
    pub fn session_exists(&self, id: &SessionId) -> bool {
        self.read().sessions.contains_key(id)
    }

    pub fn user(&self, id: &UserId) -> Option<Arc<UserRecord>> {
        self.read().users.get(id).cloned()
    }

    pub fn user_by_email(&self, email: &str) -> Option<Arc<UserRecord>> {
        let inner = self.read();
        inner.by_email.get(email).and_then(|id| inner.users.get(id)).cloned()
    }

    /// Every user, by email.
    pub fn users(&self) -> Vec<Arc<UserRecord>> {
        let mut all: Vec<_> = self.read().users.values().cloned().collect();
        all.sort_by(|a, b| a.email.cmp(&b.email));
        all
    }

    /// The user's role in `tenant`, if a member.
    pub fn role_in(&self, user: &UserId, tenant: &TenantId) -> Option<Role> {
        self.read().roles.get(user).and_then(|r| r.get(tenant)).copied()
    }

    /// Every tenant the user is a member of, with the role there.
    pub fn memberships_of(&self, user: &UserId) -> Vec<(TenantId, Role)> {
        self.read().roles.get(user).map(|r| r.iter().map(|(t, r)| (t.clone(), *r)).collect()).unwrap_or_default()
    }

    // ---- after a committed change of this node --------------------------------------------

    fn count_local(inner: &mut Inner, user: &UserId) {
        *inner.local.entry(user.clone()).or_insert(0) += 1;
    }

    /// A user was created or changed; `end_sessions`: their sessions were deleted with it.
    pub fn put_user(&self, user: UserRecord, end_sessions: bool) {
        let mut inner = self.write();
        Self::count_local(&mut inner, &user.id);
        if end_sessions {
            inner.sessions.retain(|_, s| s.record.user_id != user.id);
        }
        inner.put_user(user);
    }

    /// A session was stored for the user as of version `user_was` (their `updated_at`): held
    /// here too unless the user changed since (a new password or disabling ended their sessions
    /// meanwhile), then `false`.
    pub fn put_session(&self, session: SessionRecord, user_was: Timestamp) -> bool {
        let mut inner = self.write();
        let current =
            inner.users.get(&session.user_id).is_some_and(|u| u.updated_at == user_was && u.disabled_at.is_none());
        if !current {
            return false;
        }
        Self::count_local(&mut inner, &session.user_id);
        inner.sessions.insert(session.id.clone(), Arc::new(LiveSession::new(session)));
        true
    }

    pub fn remove_session(&self, id: &SessionId) {
        let mut inner = self.write();
        if let Some(s) = inner.sessions.remove(id) {
            Self::count_local(&mut inner, &s.record.user_id);
        }
    }

    /// This node added, changed (`Some`) or removed (`None`) a membership.
    pub fn set_role(&self, tenant: &TenantId, user: &UserId, role: Option<Role>) {
        let mut inner = self.write();
        *inner.local_members.entry(tenant.clone()).or_insert(0) += 1;
        inner.set_role(tenant, user, role);
    }

    /// Membership changes this node has put for `tenant` so far (see [`People::replace_members`]).
    pub fn member_changes(&self, tenant: &TenantId) -> u64 {
        self.read().local_members.get(tenant).copied().unwrap_or(0)
    }

    /// Replaces a tenant's memberships with a re-read of them (another node changed them),
    /// unless this node changed them since `seen` was taken (then `false`: read again).
    pub fn replace_members(&self, tenant: &TenantId, members: Vec<Membership>, seen: u64) -> bool {
        let mut inner = self.write();
        if inner.local_members.get(tenant).copied().unwrap_or(0) != seen {
            return false;
        }
        inner.clear_members(tenant);
        for m in members {
            inner.set_role(tenant, &m.user_id, Some(m.role));
        }
        true
    }

    /// Forgets every membership of a purged tenant.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        let mut inner = self.write();
        inner.clear_members(tenant);
        inner.members.remove(tenant);
        *inner.local_members.entry(tenant.clone()).or_insert(0) += 1;
    }

    /// Changes this node has put for `user` so far (see [`People::apply_reread`]).
    pub fn local_changes(&self, user: &UserId) -> u64 {
        self.read().local.get(user).copied().unwrap_or(0)
    }

    /// Applies a re-read of a user and their sessions (`None`: the user is gone), unless this
    /// node changed the user since `seen` was taken (then `false`: read again). A session still
    /// known here keeps its last-seen time.
    pub fn apply_reread(&self, user: &UserId, found: Option<(UserRecord, Vec<SessionRecord>)>, seen: u64) -> bool {
        let mut inner = self.write();
        if inner.local.get(user).copied().unwrap_or(0) != seen {
            return false;
        }
        let mut kept: HashMap<SessionId, Arc<LiveSession>> = HashMap::new();
        inner.sessions.retain(|id, s| {
            if &s.record.user_id == user {
                kept.insert(id.clone(), s.clone());
                false
            } else {
                true
            }
        });
        match found {
            Some((record, sessions)) => {
                inner.put_user(record);
                for s in sessions {
                    let live = match kept.remove(&s.id) {
                        Some(old) => {
                            // Used on another node since: idle time counts from the later use.
                            old.last_seen.fetch_max(s.last_seen_at.millis(), Ordering::Relaxed);
                            // ... and the store has it: no need to write it back.
                            old.stored.fetch_max(s.last_seen_at.millis(), Ordering::Relaxed);
                            old
                        }
                        None => Arc::new(LiveSession::new(s)),
                    };
                    inner.sessions.insert(live.record.id.clone(), live);
                }
            }
            None => {
                if let Some(old) = inner.users.remove(user) {
                    inner.by_email.remove(&old.email);
                }
            }
        }
        true
    }

    /// Sessions used since their last-seen time was last stored, at least `min_ms` later than
    /// that: what the next flush writes (then [`People::stored`]).
    pub fn touched(&self, min_ms: i64) -> Vec<(SessionId, Timestamp)> {
        let inner = self.read();
        let mut out = Vec::new();
        for (id, s) in &inner.sessions {
            let seen = s.last_seen.load(Ordering::Relaxed);
            if seen - s.stored.load(Ordering::Relaxed) >= min_ms {
                out.push((id.clone(), Timestamp::from_millis(seen)));
            }
        }
        out
    }

    /// The store now holds these last-seen times.
    pub fn stored(&self, written: &[(SessionId, Timestamp)]) {
        let inner = self.read();
        for (id, at) in written {
            if let Some(s) = inner.sessions.get(id) {
                s.stored.fetch_max(at.millis(), Ordering::Relaxed);
            }
        }
    }

    /// Drops sessions that no longer work at `now` (the store deletes its rows the same way).
    pub fn drop_ended(&self, now: Timestamp, policy: &SessionPolicy) {
        self.write().sessions.retain(|_, s| s.is_live(now, policy));
    }
}

// ---- sign-in throttling ---------------------------------------------------------------------------

/// Failed sign-ins allowed per account, and per client address, within [`THROTTLE_WINDOW_MS`].
pub const FAILURES_PER_ACCOUNT: u32 = 5;
pub const FAILURES_PER_ADDRESS: u32 = 20;
pub const THROTTLE_WINDOW_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: i64,
}

/// Counts sign-ins that did not succeed, per account and per address, over a fixed window; past
/// the limit, every attempt (right password or not) is refused until the window ends. An attempt
/// counts from its start (so many at once cannot slip past the limit while their passwords are
/// being checked) and is taken back when it succeeds. In memory, per node: with several nodes an
/// attacker gets each node's allowance (documented in docs/ADMIN.md).
#[derive(Default)]
pub struct LoginThrottle {
    inner: std::sync::Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    fn keys(email: &str, ip: &str) -> [(String, u32); 2] {
        [(format!("account:{email}"), FAILURES_PER_ACCOUNT), (format!("address:{ip}"), FAILURES_PER_ADDRESS)]
    }

    fn wait(map: &HashMap<String, Failures>, email: &str, ip: &str, now: Timestamp) -> Option<u64> {
        Self::keys(email, ip)
            .iter()
            .filter_map(|(k, max)| {
                let f = map.get(k)?;
                let left = f.since + THROTTLE_WINDOW_MS - now.millis();
                (f.count >= *max && left > 0).then(|| (left as u64).div_ceil(1000))
            })
            .max()
    }

    /// An attempt starts: `Err(seconds to wait)` when the account or the address is throttled,
    /// else it is counted (as a failure, until [`LoginThrottle::succeeded`]).
    pub fn attempt(&self, email: &str, ip: &str, now: Timestamp) -> std::result::Result<(), u64> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wait) = Self::wait(&map, email, ip, now) {
            return Err(wait);
        }
        if map.len() > 100_000 {
            map.retain(|_, f| f.since + THROTTLE_WINDOW_MS > now.millis());
        }
        for (k, _) in Self::keys(email, ip) {
            let f = map.entry(k).or_insert(Failures { count: 0, since: now.millis() });
            if f.since + THROTTLE_WINDOW_MS <= now.millis() {
                *f = Failures { count: 0, since: now.millis() };
            }
            f.count += 1;
        }
        Ok(())
    }

    /// The attempt succeeded: the account's count is cleared, the address's attempt taken back.
    pub fn succeeded(&self, email: &str, ip: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("account:{email}"));
        if let Some(f) = map.get_mut(&format!("address:{ip}")) {
            f.count = f.count.saturating_sub(1);
        }
    }
}

/// Refusal of a change made with a session cookie from anywhere but this server's own pages.
pub fn cross_origin_change() -> Error {
    Error::forbidden(
        "a change made with a session cookie needs a same-origin `Origin` header (or `Sec-Fetch-Site: same-origin`)",
    )
}

/// Refusal of a sign-in: always the same words, whether the account exists or not.
pub fn bad_credentials() -> Error {
    Error::new(ErrorCode::Unauthenticated, "wrong email or password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_only_itself_and_never_prints() {
        let h = PasswordHash::new("correct horse").unwrap();
        assert!(h.as_stored().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", h.as_stored());
        assert!(h.verify("correct horse"));
        assert!(!h.verify("correct horsE"));
        assert!(!PasswordHash::from_stored("garbage".into()).verify("garbage"));
        assert_eq!(format!("{h:?}"), "PasswordHash(<redacted>)");
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(normalize_email("  Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in
            ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com", "ada@@example.com", "ada@-x.com"]
        {
            assert_eq!(normalize_email(bad).unwrap_err().code, ErrorCode::InvalidRequest, "{bad}");
        }
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("        ").is_err());
        assert!(validate_password("12345678").is_ok());
    }

    fn user(email: &str) -> UserRecord {
        UserRecord {
            id: UserId::generate(),
            email: email.into(),
            name: String::new(),
            password: None,
            super_admin: false,
            disabled_at: None,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        }
    }

    fn session(user: &UserRecord, token: &Token, id: &SessionId, at: i64) -> SessionRecord {
        SessionRecord {
            id: id.clone(),
            user_id: user.id.clone(),
            hash: token.hash(),
            created_at: Timestamp::from_millis(at),
            expires_at: Timestamp::from_millis(at + 10_000),
            last_seen_at: Timestamp::from_millis(at),
        }
    }

    #[test]
    fn a_session_works_until_idle_absolute_end_logout_or_disabling() {
        let policy = SessionPolicy { idle_ms: 1_000, absolute_ms: 10_000, invite_ms: 1 };
        let people = People::default();
        let ada = user("ada@example.com");
        let id = SessionId::generate();
        let token = Token::mint(id.as_str());
        people.load(vec![ada.clone()], vec![session(&ada, &token, &id, 0)], vec![]);
        let at = Timestamp::from_millis;
        assert_eq!(people.check(&token, at(900), &policy).unwrap().user.id, ada.id);
        // Used at 900: idle counts from there.
        assert!(people.check(&token, at(1_800), &policy).is_some());
        assert!(people.check(&token, at(2_801), &policy).is_none(), "idle for over a second");
        // A wrong secret for the right id, and garbage.
        let forged = Token::from_presented(&format!("{id}.{}", "0".repeat(64)));
        assert!(people.check(&forged, at(2_000), &policy).is_none());
        assert!(people.check(&Token::from_presented("x"), at(2_000), &policy).is_none());
        // The absolute end holds however busy the session is.
        let busy = People::default();
        busy.load(vec![ada.clone()], vec![session(&ada, &token, &id, 0)], vec![]);
        for t in (0..10_000).step_by(500) {
            assert!(busy.check(&token, at(t), &policy).is_some(), "{t}");
        }
        assert!(busy.check(&token, at(10_000), &policy).is_none());
        // Disabling the user ends it; so does removing it.
        let mut disabled = ada.clone();
        disabled.disabled_at = Some(at(1));
        people.load(vec![disabled], vec![session(&ada, &token, &id, 0)], vec![]);
        assert!(people.check(&token, at(10), &policy).is_none());
        people.load(vec![ada.clone()], vec![session(&ada, &token, &id, 0)], vec![]);
        people.remove_session(&id);
        assert!(people.check(&token, at(10), &policy).is_none());
    }

    #[test]
    fn memberships_follow_changes_and_rereads() {
        let people = People::default();
        let (ada, tom) = (user("ada@example.com"), user("tom@example.com"));
        let (t1, t2) = (TenantId::generate(), TenantId::generate());
        people.load(vec![ada.clone(), tom.clone()], vec![], vec![]);
        people.set_role(&t1, &ada.id, Some(Role::Admin));
        people.set_role(&t2, &ada.id, Some(Role::Reader));
        people.set_role(&t1, &tom.id, Some(Role::Writer));
        assert_eq!(people.role_in(&ada.id, &t1), Some(Role::Admin));
        assert_eq!(people.memberships_of(&ada.id).len(), 2);
        let m = |u: &UserRecord, r| Membership {
            tenant_id: t1.clone(),
            user_id: u.id.clone(),
            role: r,
            created_at: Timestamp::from_millis(0),
            created_by: "operator".into(),
        };
        let seen = people.member_changes(&t1);
        assert!(!people.replace_members(&t1, vec![], seen - 1), "a re-read older than a change here is dropped");
        assert!(people.replace_members(&t1, vec![m(&tom, Role::Owner)], seen));
        assert_eq!(people.role_in(&ada.id, &t1), None);
        assert_eq!(people.role_in(&ada.id, &t2), Some(Role::Reader));
        assert_eq!(people.role_in(&tom.id, &t1), Some(Role::Owner));
        people.forget_tenant(&t1);
        assert_eq!(people.role_in(&tom.id, &t1), None);
    }

    #[test]
    fn throttling_counts_attempts_per_account_and_per_address_within_a_window() {
        let t = LoginThrottle::default();
        let at = Timestamp::from_millis;
        for _ in 0..FAILURES_PER_ACCOUNT {
            assert_eq!(t.attempt("a@x.io", "1.1.1.1", at(0)), Ok(()));
        }
        assert_eq!(t.attempt("a@x.io", "2.2.2.2", at(1_000)), Err(899));
        assert_eq!(t.attempt("b@x.io", "1.1.1.1", at(1_000)), Ok(()), "the address has attempts left");
        assert_eq!(t.attempt("a@x.io", "2.2.2.2", at(THROTTLE_WINDOW_MS)), Ok(()), "the window ended");
        for i in 0..FAILURES_PER_ADDRESS {
            let _ = t.attempt(&format!("u{i}@x.io"), "3.3.3.3", at(0));
        }
        assert!(t.attempt("new@x.io", "3.3.3.3", at(0)).is_err());
        // Successes are taken back: an office behind one address signs in all day.
        let office = LoginThrottle::default();
        for i in 0..10 * FAILURES_PER_ADDRESS {
            let email = format!("u{i}@x.io");
            assert_eq!(office.attempt(&email, "4.4.4.4", at(0)), Ok(()), "{i}");
            office.succeeded(&email, "4.4.4.4");
        }
    }
}
