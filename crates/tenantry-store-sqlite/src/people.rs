//! People: users, sessions and invitations in the shared database (the install's), memberships with their
//! tenant's rows (shared or dedicated database), changed in one transaction with the tenant's
//! journal.

use crate::error::{corrupt, is_unique_violation, sql_error};
use crate::journal::journal_tx;
use crate::store::SqliteStore;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tenantry_core::events::Journal;
use tenantry_core::ids::{InviteId, SessionId, TenantId, UserId};
use tenantry_core::people::{InvitationRecord, Membership, PasswordHash, SessionRecord, UserRecord};
use tenantry_core::role::Role;
use tenantry_core::secret::SecretHash;
use tenantry_core::store::{PeopleStore, TenantScope};
use tenantry_core::time::Timestamp;
use tenantry_core::{Error, Result};

const USER_COLUMNS: &str = "id, email, name, password, super_admin, disabled_at, created_at, updated_at";
const INVITATION_COLUMNS: &str = "id, tenant_id, email, role, hash, created_at, expires_at, created_by";
const SESSION_COLUMNS: &str = "id, user_id, hash, created_at, expires_at, last_seen_at";
const MEMBER_COLUMNS: &str = "tenant_id, user_id, role, created_at, created_by";

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<Result<UserRecord>> {
    let (id, email, name, password): (String, String, String, Option<String>) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let (super_admin, disabled_at): (bool, Option<i64>) = (r.get(4)?, r.get(5)?);
    let (created, updated): (i64, i64) = (r.get(6)?, r.get(7)?);
    Ok((|| {
        Ok(UserRecord {
            id: UserId::parse(&id).ok_or_else(|| corrupt("user id"))?,
            email,
            name,
            password: password.map(PasswordHash::from_stored),
            super_admin,
            disabled_at: disabled_at.map(Timestamp::from_millis),
            created_at: Timestamp::from_millis(created),
            updated_at: Timestamp::from_millis(updated),
        })
    })())
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Result<SessionRecord>> {
    let (id, user, hash): (String, String, Vec<u8>) = (r.get(0)?, r.get(1)?, r.get(2)?);
    let (created, expires, seen): (i64, i64, i64) = (r.get(3)?, r.get(4)?, r.get(5)?);
    Ok((|| {
        Ok(SessionRecord {
            id: SessionId::parse(&id).ok_or_else(|| corrupt("session id"))?,
            user_id: UserId::parse(&user).ok_or_else(|| corrupt("user id"))?,
            hash: SecretHash::from_slice(&hash).ok_or_else(|| corrupt("session hash"))?,
            created_at: Timestamp::from_millis(created),
            expires_at: Timestamp::from_millis(expires),
            last_seen_at: Timestamp::from_millis(seen),
        })
    })())
}

fn member_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Membership>> {
    let (tenant, user, role, created, by): (String, String, String, i64, String) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    Ok((|| {
        Ok(Membership {
            tenant_id: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant id"))?,
            user_id: UserId::parse(&user).ok_or_else(|| corrupt("user id"))?,
            role: Role::parse(&role).map_err(|_| corrupt("role"))?,
            created_at: Timestamp::from_millis(created),
            created_by: by,
        })
    })())
}

fn invitation_from_row(r: &Row<'_>) -> rusqlite::Result<Result<InvitationRecord>> {
    let (id, tenant, email, role, hash): (String, String, String, String, Vec<u8>) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let (created, expires, by): (i64, i64, String) = (r.get(5)?, r.get(6)?, r.get(7)?);
    Ok((|| {
        Ok(InvitationRecord {
            id: InviteId::parse(&id).ok_or_else(|| corrupt("invitation id"))?,
            tenant_id: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant id"))?,
            email,
            role: Role::parse(&role).map_err(|_| corrupt("role"))?,
            hash: SecretHash::from_slice(&hash).ok_or_else(|| corrupt("invitation hash"))?,
            created_at: Timestamp::from_millis(created),
            expires_at: Timestamp::from_millis(expires),
            created_by: by,
        })
    })())
}

fn all<T>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    row: fn(&Row<'_>) -> rusqlite::Result<Result<T>>,
) -> Result<Vec<T>> {
    let mut s = conn.prepare_cached(sql).map_err(sql_error)?;
    let rows = s.query_map(args, row).map_err(sql_error)?;
    rows.map(|r| r.map_err(sql_error)?).collect()
}

/// Inserts the user, or with `was`, replaces the row whose `updated_at` is `was`.
fn write_user_tx(tx: &Connection, u: &UserRecord, was: Option<Timestamp>) -> Result<usize> {
    let sql = match was {
        None => format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        Some(_) => "UPDATE users SET email = ?2, name = ?3, password = ?4, super_admin = ?5, disabled_at = ?6,
                       created_at = ?7, updated_at = ?8 WHERE id = ?1 AND updated_at = ?9"
            .to_owned(),
    };
    let mut args: Vec<rusqlite::types::Value> = vec![
        u.id.as_str().to_owned().into(),
        u.email.clone().into(),
        u.name.clone().into(),
        u.password.as_ref().map(|p| p.as_stored().to_owned()).into(),
        (u.super_admin as i64).into(),
        u.disabled_at.map(Timestamp::millis).into(),
        u.created_at.millis().into(),
        u.updated_at.millis().into(),
    ];
    if let Some(w) = was {
        args.push(w.millis().into());
    }
    tx.execute(&sql, rusqlite::params_from_iter(args)).map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict(format!("a user with email {} exists already", u.email))
        } else {
            sql_error(e)
        }
    })
}

impl SqliteStore {
    /// Every membership: the shared database's, and each dedicated tenant's own.
    async fn all_members(&self) -> Result<Vec<Membership>> {
        let sql = format!("SELECT {MEMBER_COLUMNS} FROM memberships ORDER BY tenant_id, created_at, user_id");
        let q = sql.clone();
        let mut members = self.read_shared(move |conn| all(conn, &q, [], member_from_row)).await?;
        for tenant in self.routes.dedicated_tenants() {
            let q = sql.clone();
            let t = tenant.clone();
            let own = self.read_of(&tenant, move |conn| all(conn, &q, [], member_from_row)).await?;
            members.extend(own.into_iter().filter(|m| m.tenant_id == t));
        }
        Ok(members)
    }
}

#[async_trait]
impl PeopleStore for SqliteStore {
    async fn load_people(&self) -> Result<(Vec<UserRecord>, Vec<SessionRecord>, Vec<Membership>)> {
        let (users, sessions) = self
            .read_shared(|conn| {
                let users = all(conn, &format!("SELECT {USER_COLUMNS} FROM users"), [], user_from_row)?;
                let sessions = all(conn, &format!("SELECT {SESSION_COLUMNS} FROM sessions"), [], session_from_row)?;
                Ok((users, sessions))
            })
            .await?;
        Ok((users, sessions, self.all_members().await?))
    }

    async fn load_person(&self, user: &UserId) -> Result<Option<(UserRecord, Vec<SessionRecord>)>> {
        let id = user.clone();
        self.read_shared(move |conn| {
            let found = conn
                .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))
                .and_then(|mut s| s.query_row([id.as_str()], user_from_row).optional())
                .map_err(sql_error)?
                .transpose()?;
            let Some(u) = found else { return Ok(None) };
            let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = ?1");
            Ok(Some((u, all(conn, &sql, [id.as_str()], session_from_row)?)))
        })
        .await
    }

    async fn load_members(&self, scope: &TenantScope) -> Result<Vec<Membership>> {
        let tenant = scope.tenant_id().clone();
        let t = tenant.clone();
        self.read_of(&tenant, move |conn| {
            let sql =
                format!("SELECT {MEMBER_COLUMNS} FROM memberships WHERE tenant_id = ?1 ORDER BY created_at, user_id");
            all(conn, &sql, [t.as_str()], member_from_row)
        })
        .await
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<()> {
        let u = user.clone();
        self.write_shared(move |tx| write_user_tx(tx, &u, None).map(|_| ())).await
    }

    async fn update_user(&self, user: &UserRecord, was: Timestamp, end_sessions: bool) -> Result<()> {
        let u = user.clone();
        self.write_shared(move |tx| {
            let exists: bool = tx
                .query_row("SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)", [u.id.as_str()], |r| r.get(0))
                .map_err(sql_error)?;
            if !exists {
                return Err(Error::not_found(format!("user '{}' not found", u.id)));
            }
            if write_user_tx(tx, &u, Some(was))? == 0 {
                return Err(Error::conflict(format!("user '{}' changed meanwhile", u.id)));
            }
            if end_sessions {
                tx.execute("DELETE FROM sessions WHERE user_id = ?1", [u.id.as_str()]).map_err(sql_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn insert_session(&self, session: &SessionRecord, user_was: Timestamp) -> Result<()> {
        let s = session.clone();
        self.write_shared(move |tx| {
            let n = tx
                .execute(
                    &format!(
                        "INSERT INTO sessions ({SESSION_COLUMNS}) SELECT ?1, ?2, ?3, ?4, ?5, ?6
                         WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2 AND updated_at = ?7 AND disabled_at IS NULL)"
                    ),
                    params![
                        s.id.as_str(),
                        s.user_id.as_str(),
                        s.hash.0.as_slice(),
                        s.created_at.millis(),
                        s.expires_at.millis(),
                        s.last_seen_at.millis(),
                        user_was.millis()
                    ],
                )
                .map_err(sql_error)?;
            if n == 0 {
                return Err(Error::conflict("the user changed since the password was checked"));
            }
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, id: &SessionId) -> Result<()> {
        let id = id.clone();
        self.write_shared(move |tx| {
            tx.execute("DELETE FROM sessions WHERE id = ?1", [id.as_str()]).map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn touch_sessions(&self, seen: &[(SessionId, Timestamp)]) -> Result<()> {
        let seen = seen.to_vec();
        self.write_shared(move |tx| {
            let mut s = tx
                .prepare_cached("UPDATE sessions SET last_seen_at = MAX(last_seen_at, ?2) WHERE id = ?1")
                .map_err(sql_error)?;
            for (id, at) in &seen {
                s.execute(params![id.as_str(), at.millis()]).map_err(sql_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_ended_sessions(&self, now: Timestamp, idle_ms: i64) -> Result<u64> {
        self.write_shared(move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen_at <= ?1 - ?2",
                    params![now.millis(), idle_ms],
                )
                .map_err(sql_error)?;
            tx.execute("DELETE FROM invitations WHERE expires_at <= ?1", [now.millis()]).map_err(sql_error)?;
            Ok(n as u64)
        })
        .await
    }

    async fn insert_member(&self, scope: &TenantScope, member: &Membership, journal: Journal) -> Result<()> {
        if &member.tenant_id != scope.tenant_id() {
            return Err(Error::internal("member's tenant differs from the scope"));
        }
        let (scope, m) = (scope.clone(), member.clone());
        self.write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            tx.execute(
                &format!("INSERT INTO memberships ({MEMBER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![m.tenant_id.as_str(), m.user_id.as_str(), m.role.as_str(), m.created_at.millis(), m.created_by],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("user '{}' is a member already", m.user_id))
                } else {
                    sql_error(e)
                }
            })?;
            journal_tx(tx, scope.tenant_id(), scope.slug().as_str(), journal, published)
        })
        .await
    }

    async fn set_member_role(&self, scope: &TenantScope, user: &UserId, role: Role, journal: Journal) -> Result<()> {
        let (scope, user) = (scope.clone(), user.clone());
        self.write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            let n = tx
                .execute(
                    "UPDATE memberships SET role = ?3 WHERE tenant_id = ?1 AND user_id = ?2",
                    params![scope.tenant_id().as_str(), user.as_str(), role.as_str()],
                )
                .map_err(sql_error)?;
            if n == 0 {
                return Err(Error::not_found(format!("member '{user}' not found")));
            }
            journal_tx(tx, scope.tenant_id(), scope.slug().as_str(), journal, published)
        })
        .await
    }

    async fn remove_member(&self, scope: &TenantScope, user: &UserId, journal: Journal) -> Result<()> {
        let (scope, user) = (scope.clone(), user.clone());
        self.write_journaled(&scope.tenant_id().clone(), None, move |tx, published| {
            let n = tx
                .execute(
                    "DELETE FROM memberships WHERE tenant_id = ?1 AND user_id = ?2",
                    params![scope.tenant_id().as_str(), user.as_str()],
                )
                .map_err(sql_error)?;
            if n == 0 {
                return Err(Error::not_found(format!("member '{user}' not found")));
            }
            journal_tx(tx, scope.tenant_id(), scope.slug().as_str(), journal, published)
        })
        .await
    }

    async fn insert_invitation(&self, invitation: &InvitationRecord) -> Result<()> {
        let i = invitation.clone();
        self.write_shared(move |tx| {
            tx.execute(
                "DELETE FROM invitations WHERE tenant_id = ?1 AND email = ?2",
                params![i.tenant_id.as_str(), i.email],
            )
            .map_err(sql_error)?;
            tx.execute(
                &format!("INSERT INTO invitations ({INVITATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    i.id.as_str(),
                    i.tenant_id.as_str(),
                    i.email,
                    i.role.as_str(),
                    i.hash.0.as_slice(),
                    i.created_at.millis(),
                    i.expires_at.millis(),
                    i.created_by
                ],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn get_invitation(&self, id: &InviteId) -> Result<Option<InvitationRecord>> {
        let id = id.clone();
        self.read_shared(move |conn| {
            let sql = format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE id = ?1");
            Ok(all(conn, &sql, [id.as_str()], invitation_from_row)?.into_iter().next())
        })
        .await
    }

    async fn delete_invitation(&self, id: &InviteId) -> Result<bool> {
        let id = id.clone();
        self.write_shared(move |tx| {
            let n = tx.execute("DELETE FROM invitations WHERE id = ?1", [id.as_str()]).map_err(sql_error)?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_invitations(&self, scope: &TenantScope) -> Result<Vec<InvitationRecord>> {
        let tenant = scope.tenant_id().clone();
        self.read_shared(move |conn| {
            let sql =
                format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE tenant_id = ?1 ORDER BY created_at, id");
            all(conn, &sql, [tenant.as_str()], invitation_from_row)
        })
        .await
    }
}
