//! People: users, sessions and invitations in the shared database (the install's tables,
//! migration 3), each
//! change one statement or one transaction on a shared connection; memberships are the tenant's
//! rows, written in a transaction of the tenant with its journal, wherever the tenant lives.

use crate::error::{corrupt, pg_error};
use crate::journal::journal_tx;
use crate::store::{begin, commit, lock_usage, PgStore};
use async_trait::async_trait;
use tenantry_core::events::Journal;
use tenantry_core::ids::{InviteId, SessionId, TenantId, UserId};
use tenantry_core::people::{InvitationRecord, Membership, PasswordHash, SessionRecord, UserRecord};
use tenantry_core::role::Role;
use tenantry_core::secret::SecretHash;
use tenantry_core::store::{PeopleStore, TenantScope};
use tenantry_core::time::Timestamp;
use tenantry_core::{Error, ErrorCode, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

const USER_COLUMNS: &str = "id, email, name, password, super_admin, disabled_at, created_at, updated_at";
const INVITATION_COLUMNS: &str = "id, tenant_id, email, role, hash, created_at, expires_at, created_by";
const SESSION_COLUMNS: &str = "id, user_id, hash, created_at, expires_at, last_seen_at";
const MEMBER_COLUMNS: &str = "tenant_id, user_id, role, created_at, created_by";

fn user_from_row(r: &Row) -> Result<UserRecord> {
    Ok(UserRecord {
        id: UserId::parse(r.get(0)).ok_or_else(|| corrupt("user id"))?,
        email: r.get(1),
        name: r.get(2),
        password: r.get::<_, Option<String>>(3).map(PasswordHash::from_stored),
        super_admin: r.get(4),
        disabled_at: r.get::<_, Option<i64>>(5).map(Timestamp::from_millis),
        created_at: Timestamp::from_millis(r.get(6)),
        updated_at: Timestamp::from_millis(r.get(7)),
    })
}

fn invitation_from_row(r: &Row) -> Result<InvitationRecord> {
    Ok(InvitationRecord {
        id: InviteId::parse(r.get(0)).ok_or_else(|| corrupt("invitation id"))?,
        tenant_id: TenantId::parse(r.get(1)).ok_or_else(|| corrupt("tenant id"))?,
        email: r.get(2),
        role: Role::parse(r.get(3)).map_err(|_| corrupt("role"))?,
        hash: SecretHash::from_slice(r.get(4)).ok_or_else(|| corrupt("invitation hash"))?,
        created_at: Timestamp::from_millis(r.get(5)),
        expires_at: Timestamp::from_millis(r.get(6)),
        created_by: r.get(7),
    })
}

fn session_from_row(r: &Row) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id: SessionId::parse(r.get(0)).ok_or_else(|| corrupt("session id"))?,
        user_id: UserId::parse(r.get(1)).ok_or_else(|| corrupt("user id"))?,
        hash: SecretHash::from_slice(r.get(2)).ok_or_else(|| corrupt("session hash"))?,
        created_at: Timestamp::from_millis(r.get(3)),
        expires_at: Timestamp::from_millis(r.get(4)),
        last_seen_at: Timestamp::from_millis(r.get(5)),
    })
}

fn member_from_row(r: &Row) -> Result<Membership> {
    Ok(Membership {
        tenant_id: TenantId::parse(r.get(0)).ok_or_else(|| corrupt("tenant id"))?,
        user_id: UserId::parse(r.get(1)).ok_or_else(|| corrupt("user id"))?,
        role: Role::parse(r.get(2)).map_err(|_| corrupt("role"))?,
        created_at: Timestamp::from_millis(r.get(3)),
        created_by: r.get(4),
    })
}

/// A user's row as statement parameters, in [`USER_COLUMNS`] order.
struct UserParams {
    password: Option<String>,
    disabled: Option<i64>,
    created: i64,
    updated: i64,
}

impl UserParams {
    fn of(u: &UserRecord) -> UserParams {
        UserParams {
            password: u.password.as_ref().map(|p| p.as_stored().to_owned()),
            disabled: u.disabled_at.map(Timestamp::millis),
            created: u.created_at.millis(),
            updated: u.updated_at.millis(),
        }
    }
}

fn email_taken(e: Error, email: &str) -> Error {
    if e.code == ErrorCode::Conflict {
        Error::conflict(format!("a user with email {email} exists already"))
    } else {
        e
    }
}

impl PgStore {
    /// One statement on the tenant's memberships, in a transaction of the tenant with the
    /// change's journal: the rows it changed (none: rolled back, nothing journaled).
    async fn member_change(
        &self,
        scope: &TenantScope,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        journal: Journal,
    ) -> Result<u64> {
        let tenant = scope.tenant_id();
        let _turn = self.turn(tenant).await;
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        lock_usage(&self.places, &tx, tenant).await?;
        let n = tx.execute(sql, params).await.map_err(pg_error)?;
        if n == 0 {
            return Ok(0);
        }
        let mut published = Vec::new();
        journal_tx(&tx, tenant, scope.slug().as_str(), journal, &mut published).await?;
        commit(tx).await?;
        self.announce_key_change(tenant, None).await;
        self.publish(tenant, &published);
        Ok(n)
    }

    /// A tenant's memberships, wherever the tenant lives.
    async fn members_of(&self, tenant: &TenantId) -> Result<Vec<Membership>> {
        let rows = self
            .read_rows(
                tenant,
                &format!("SELECT {MEMBER_COLUMNS} FROM memberships WHERE tenant_id = $1 ORDER BY created_at, user_id"),
                &[&tenant.as_str()],
            )
            .await?;
        rows.iter().map(member_from_row).collect()
    }
}

#[async_trait]
impl PeopleStore for PgStore {
    async fn load_people(&self) -> Result<(Vec<UserRecord>, Vec<SessionRecord>, Vec<Membership>)> {
        let conn = self.shared_conn().await?;
        let users = conn.query(&format!("SELECT {USER_COLUMNS} FROM users"), &[]).await.map_err(pg_error)?;
        let sessions = conn.query(&format!("SELECT {SESSION_COLUMNS} FROM sessions"), &[]).await.map_err(pg_error)?;
        let members = conn
            .query(&format!("SELECT {MEMBER_COLUMNS} FROM tenantry_directory_members()"), &[])
            .await
            .map_err(pg_error)?;
        drop(conn);
        let users = users.iter().map(user_from_row).collect::<Result<Vec<_>>>()?;
        let sessions = sessions.iter().map(session_from_row).collect::<Result<Vec<_>>>()?;
        let mut members = members.iter().map(member_from_row).collect::<Result<Vec<_>>>()?;
        // Dedicated tenants' memberships are in their own databases.
        for tenant in self.places.dedicated_tenants() {
            members.retain(|m| m.tenant_id != tenant);
            match self.members_of(&tenant).await {
                Ok(found) => members.extend(found),
                Err(e) => tracing::warn!("could not read {tenant}'s members in its own database: {}", e.message),
            }
        }
        Ok((users, sessions, members))
    }

    async fn load_person(&self, user: &UserId) -> Result<Option<(UserRecord, Vec<SessionRecord>)>> {
        let conn = self.shared_conn().await?;
        let id = user.as_str();
        let found = conn
            .query_opt(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"), &[&id])
            .await
            .map_err(pg_error)?;
        let Some(row) = found else { return Ok(None) };
        let sessions = conn
            .query(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1"), &[&id])
            .await
            .map_err(pg_error)?;
        Ok(Some((user_from_row(&row)?, sessions.iter().map(session_from_row).collect::<Result<Vec<_>>>()?)))
    }

    async fn load_members(&self, scope: &TenantScope) -> Result<Vec<Membership>> {
        self.members_of(scope.tenant_id()).await
    }

    async fn insert_user(&self, u: &UserRecord) -> Result<()> {
        let conn = self.shared_conn().await?;
        let p = UserParams::of(u);
        conn.execute(
            &format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
            &[&u.id.as_str(), &u.email, &u.name, &p.password, &u.super_admin, &p.disabled, &p.created, &p.updated],
        )
        .await
        .map_err(|e| email_taken(pg_error(e), &u.email))?;
        Ok(())
    }

    async fn update_user(&self, u: &UserRecord, was: Timestamp, end_sessions: bool) -> Result<()> {
        let mut conn = self.shared_conn().await?;
        let tx = conn.transaction().await.map_err(pg_error)?;
        let p = UserParams::of(u);
        let n = tx
            .execute(
                "UPDATE users SET email = $2, name = $3, password = $4, super_admin = $5, disabled_at = $6,
                     updated_at = $7 WHERE id = $1 AND updated_at = $8",
                &[
                    &u.id.as_str(),
                    &u.email,
                    &u.name,
                    &p.password,
                    &u.super_admin,
                    &p.disabled,
                    &p.updated,
                    &was.millis(),
                ],
            )
            .await
            .map_err(|e| email_taken(pg_error(e), &u.email))?;
        if n == 0 {
            let exists =
                tx.query_opt("SELECT 1 FROM users WHERE id = $1", &[&u.id.as_str()]).await.map_err(pg_error)?;
            return Err(match exists {
                Some(_) => Error::conflict(format!("user '{}' changed meanwhile", u.id)),
                None => Error::not_found(format!("user '{}' not found", u.id)),
            });
        }
        if end_sessions {
            tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&u.id.as_str()]).await.map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)
    }

    async fn insert_session(&self, s: &SessionRecord, user_was: Timestamp) -> Result<()> {
        let conn = self.shared_conn().await?;
        // The user's row is locked (FOR SHARE) until the insert commits: a password change or
        // disabling waits for it, then deletes it with the rest.
        let n = conn
            .execute(
                &format!(
                    "INSERT INTO sessions ({SESSION_COLUMNS})
                     SELECT $1, $2, $3, $4, $5, $6 FROM users
                     WHERE id = $2 AND updated_at = $7 AND disabled_at IS NULL FOR SHARE"
                ),
                &[
                    &s.id.as_str(),
                    &s.user_id.as_str(),
                    &s.hash.0.as_slice(),
                    &s.created_at.millis(),
                    &s.expires_at.millis(),
                    &s.last_seen_at.millis(),
                    &user_was.millis(),
                ],
            )
            .await
            .map_err(pg_error)?;
        if n == 0 {
            return Err(Error::conflict("the user changed since the password was checked"));
        }
        Ok(())
    }

    async fn delete_session(&self, id: &SessionId) -> Result<()> {
        let conn = self.shared_conn().await?;
        conn.execute("DELETE FROM sessions WHERE id = $1", &[&id.as_str()]).await.map_err(pg_error)?;
        Ok(())
    }

    async fn touch_sessions(&self, seen: &[(SessionId, Timestamp)]) -> Result<()> {
        let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
        let at: Vec<i64> = seen.iter().map(|(_, t)| t.millis()).collect();
        let conn = self.shared_conn().await?;
        conn.execute(
            "UPDATE sessions s SET last_seen_at = GREATEST(s.last_seen_at, t.at)
             FROM unnest($1::text[], $2::bigint[]) AS t(id, at) WHERE s.id = t.id",
            &[&ids, &at],
        )
        .await
        .map_err(pg_error)?;
        Ok(())
    }

    async fn delete_ended_sessions(&self, now: Timestamp, idle_ms: i64) -> Result<u64> {
        let conn = self.shared_conn().await?;
        let n = conn
            .execute(
                "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $1 - $2",
                &[&now.millis(), &idle_ms],
            )
            .await
            .map_err(pg_error)?;
        conn.execute("DELETE FROM invitations WHERE expires_at <= $1", &[&now.millis()]).await.map_err(pg_error)?;
        Ok(n)
    }

    async fn insert_member(&self, scope: &TenantScope, m: &Membership, journal: Journal) -> Result<()> {
        if &m.tenant_id != scope.tenant_id() {
            return Err(Error::internal("member's tenant differs from the scope"));
        }
        let sql = format!("INSERT INTO memberships ({MEMBER_COLUMNS}) VALUES ($1, $2, $3, $4, $5)");
        let params: [&(dyn ToSql + Sync); 5] =
            [&m.tenant_id.as_str(), &m.user_id.as_str(), &m.role.as_str(), &m.created_at.millis(), &m.created_by];
        match self.member_change(scope, &sql, &params, journal).await {
            Err(e) if e.code == ErrorCode::Conflict => {
                Err(Error::conflict(format!("user '{}' is a member already", m.user_id)))
            }
            other => other.map(|_| ()),
        }
    }

    async fn set_member_role(&self, scope: &TenantScope, user: &UserId, role: Role, journal: Journal) -> Result<()> {
        let sql = "UPDATE memberships SET role = $3 WHERE tenant_id = $1 AND user_id = $2";
        let params: [&(dyn ToSql + Sync); 3] = [&scope.tenant_id().as_str(), &user.as_str(), &role.as_str()];
        match self.member_change(scope, sql, &params, journal).await? {
            0 => Err(Error::not_found(format!("member '{user}' not found"))),
            _ => Ok(()),
        }
    }

    async fn remove_member(&self, scope: &TenantScope, user: &UserId, journal: Journal) -> Result<()> {
        let sql = "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2";
        let params: [&(dyn ToSql + Sync); 2] = [&scope.tenant_id().as_str(), &user.as_str()];
        match self.member_change(scope, sql, &params, journal).await? {
            0 => Err(Error::not_found(format!("member '{user}' not found"))),
            _ => Ok(()),
        }
    }

    async fn insert_invitation(&self, i: &InvitationRecord) -> Result<()> {
        let mut conn = self.shared_conn().await?;
        let tx = conn.transaction().await.map_err(pg_error)?;
        tx.execute("DELETE FROM invitations WHERE tenant_id = $1 AND email = $2", &[&i.tenant_id.as_str(), &i.email])
            .await
            .map_err(pg_error)?;
        tx.execute(
            &format!("INSERT INTO invitations ({INVITATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
            &[
                &i.id.as_str(),
                &i.tenant_id.as_str(),
                &i.email,
                &i.role.as_str(),
                &i.hash.0.as_slice(),
                &i.created_at.millis(),
                &i.expires_at.millis(),
                &i.created_by,
            ],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    async fn get_invitation(&self, id: &InviteId) -> Result<Option<InvitationRecord>> {
        let conn = self.shared_conn().await?;
        let row = conn
            .query_opt(&format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE id = $1"), &[&id.as_str()])
            .await
            .map_err(pg_error)?;
        row.as_ref().map(invitation_from_row).transpose()
    }

    async fn delete_invitation(&self, id: &InviteId) -> Result<bool> {
        let conn = self.shared_conn().await?;
        let n = conn.execute("DELETE FROM invitations WHERE id = $1", &[&id.as_str()]).await.map_err(pg_error)?;
        Ok(n > 0)
    }

    async fn list_invitations(&self, scope: &TenantScope) -> Result<Vec<InvitationRecord>> {
        let conn = self.shared_conn().await?;
        let rows = conn
            .query(
                &format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE tenant_id = $1 ORDER BY created_at, id"),
                &[&scope.tenant_id().as_str()],
            )
            .await
            .map_err(pg_error)?;
        rows.iter().map(invitation_from_row).collect()
    }
}
