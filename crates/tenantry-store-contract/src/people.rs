//! People: users and sessions (the install's), memberships (a tenant's rows).

use crate::{assert_code, draft, now, Backend};
use tenantry_core::events::{EventDraft, Journal};
use tenantry_core::ids::{InviteId, SessionId, UserId};
use tenantry_core::model::Tenant;
use tenantry_core::people::{InvitationRecord, Membership, PasswordHash, SessionRecord, UserRecord};
use tenantry_core::role::Role;
use tenantry_core::secret::SecretHash;
use tenantry_core::time::Timestamp;
use tenantry_core::ErrorCode;

pub(crate) fn user(email: &str) -> UserRecord {
    let at = Timestamp::from_millis(now().millis());
    UserRecord {
        id: UserId::generate(),
        email: email.into(),
        name: format!("name of {email}"),
        password: Some(PasswordHash::from_stored(format!("$argon2id$v=19$stored-for-{email}"))),
        super_admin: false,
        disabled_at: None,
        created_at: at,
        updated_at: at,
    }
}

fn session(user: &UserRecord, at: i64) -> SessionRecord {
    SessionRecord {
        id: SessionId::generate(),
        user_id: user.id.clone(),
        hash: SecretHash::of(&format!("token {at} of {}", user.id)),
        created_at: Timestamp::from_millis(at),
        expires_at: Timestamp::from_millis(at + 10_000),
        last_seen_at: Timestamp::from_millis(at),
    }
}

pub(crate) fn member(tenant: &Tenant, user: &UserRecord, role: Role) -> Membership {
    Membership {
        tenant_id: tenant.id.clone(),
        user_id: user.id.clone(),
        role,
        created_at: Timestamp::from_millis(now().millis()),
        created_by: "contract".into(),
    }
}

pub(crate) fn member_journal(action: &str, user: &UserRecord) -> Journal {
    Journal::with_event(draft(action, user.id.as_str()), EventDraft::new("member.added", "contract".into()))
}

pub(crate) fn sorted<T: Clone>(mut v: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
    v.sort_by_key(|x| key(x));
    v
}

pub async fn users_and_sessions_read_back_and_end_with_the_users_password(b: &dyn Backend) {
    let f = b.open().await;
    let (ada, tom) = (user("ada@example.com"), user("tom@example.com"));
    f.store.insert_user(&ada).await.unwrap();
    f.store.insert_user(&tom).await.unwrap();
    let taken = UserRecord { id: UserId::generate(), ..user("ada@example.com") };
    assert_code(f.store.insert_user(&taken).await, ErrorCode::Conflict);
    let (s1, s2, st) = (session(&ada, 1_000), session(&ada, 2_000), session(&tom, 3_000));
    for (s, u) in [(&s1, &ada), (&s2, &ada), (&st, &tom)] {
        f.store.insert_session(s, u.updated_at).await.unwrap();
    }
    let (users, sessions, members) = f.store.load_people().await.unwrap();
    assert_eq!(sorted(users, |u| u.email.clone()), vec![ada.clone(), tom.clone()]);
    assert_eq!(sorted(sessions, |s| s.created_at.millis().to_string()), vec![s1.clone(), s2.clone(), st.clone()]);
    assert!(members.is_empty());
    // Last use is recorded, never moved back.
    f.store.touch_sessions(&[(s1.id.clone(), Timestamp::from_millis(5_000))]).await.unwrap();
    f.store.touch_sessions(&[(s1.id.clone(), Timestamp::from_millis(4_000))]).await.unwrap();
    let (_, mine) = f.store.load_person(&ada.id).await.unwrap().unwrap();
    let touched = mine.iter().find(|s| s.id == s1.id).unwrap();
    assert_eq!(touched.last_seen_at, Timestamp::from_millis(5_000));
    // A new password ends every session of the user, and only theirs; only from the version
    // it was decided on.
    let changed = UserRecord {
        password: Some(PasswordHash::from_stored("$argon2id$new".into())),
        updated_at: Timestamp::from_millis(ada.updated_at.millis() + 1),
        ..ada.clone()
    };
    let stale = UserRecord { name: "stale".into(), ..changed.clone() };
    assert_code(f.store.update_user(&stale, Timestamp::from_millis(1), true).await, ErrorCode::Conflict);
    assert_eq!(f.store.load_person(&ada.id).await.unwrap().unwrap().1.len(), 2, "a refused update ends nothing");
    f.store.update_user(&changed, ada.updated_at, true).await.unwrap();
    assert_eq!(f.store.load_person(&ada.id).await.unwrap(), Some((changed.clone(), vec![])));
    assert_eq!(f.store.load_person(&tom.id).await.unwrap(), Some((tom.clone(), vec![st.clone()])));
    // A sign-in decided on the old version is refused: it must not outlive the new password.
    assert_code(f.store.insert_session(&session(&ada, 6_000), ada.updated_at).await, ErrorCode::Conflict);
    let disabled = UserRecord {
        disabled_at: Some(Timestamp::from_millis(7_000)),
        updated_at: Timestamp::from_millis(changed.updated_at.millis() + 1),
        ..changed.clone()
    };
    f.store.update_user(&disabled, changed.updated_at, true).await.unwrap();
    assert_code(f.store.insert_session(&session(&ada, 8_000), disabled.updated_at).await, ErrorCode::Conflict);
    assert_eq!(f.store.load_person(&ada.id).await.unwrap().unwrap().1, vec![]);
    // Signing out ends one session; ended sessions go by age or idleness.
    f.store.delete_session(&st.id).await.unwrap();
    f.store.delete_session(&st.id).await.unwrap();
    assert_eq!(f.store.load_person(&tom.id).await.unwrap().unwrap().1, vec![]);
    let (fresh, idle, old) = (session(&tom, 100_000), session(&tom, 95_000), session(&tom, 85_000));
    for s in [&fresh, &idle, &old] {
        f.store.insert_session(s, tom.updated_at).await.unwrap();
    }
    // At 96,000 with an idle limit of 1,000: `idle` was last seen at 95,000 (ended), `old`
    // expired at 95,000; `fresh` is from the future of this clock and stays.
    assert_eq!(f.store.delete_ended_sessions(Timestamp::from_millis(96_000), 1_000).await.unwrap(), 2);
    assert_eq!(f.store.load_person(&tom.id).await.unwrap().unwrap().1, vec![fresh]);
    assert_eq!(f.store.load_person(&UserId::generate()).await.unwrap(), None);
    let nobody = user("nobody@example.com");
    assert_code(f.store.update_user(&nobody, nobody.updated_at, false).await, ErrorCode::NotFound);
    // Everything is still there after a restart.
    let f = b.reopen(f).await;
    let (users, _, _) = f.store.load_people().await.unwrap();
    assert_eq!(sorted(users, |u| u.email.clone()), vec![disabled, tom]);
}

pub async fn memberships_are_their_tenants_rows_journaled_and_purged_with_it(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let (tb, other) = f.tenant("globex").await;
    let (ada, tom) = (user("ada@example.com"), user("tom@example.com"));
    f.store.insert_user(&ada).await.unwrap();
    f.store.insert_user(&tom).await.unwrap();
    let ada_a = member(&ta, &ada, Role::Admin);
    f.store.insert_member(&a, &ada_a, member_journal("member.add", &ada)).await.unwrap();
    assert_code(f.store.insert_member(&a, &ada_a, member_journal("member.add", &ada)).await, ErrorCode::Conflict);
    f.store.insert_member(&other, &member(&tb, &tom, Role::Reader), member_journal("member.add", &tom)).await.unwrap();
    assert_eq!(f.store.load_members(&a).await.unwrap(), vec![ada_a.clone()]);
    // Another tenant's scope neither lists, changes nor removes it.
    assert_eq!(f.store.load_members(&other).await.unwrap().len(), 1);
    assert_code(
        f.store.remove_member(&other, &ada.id, member_journal("member.remove", &ada)).await,
        ErrorCode::NotFound,
    );
    assert_code(
        f.store.set_member_role(&other, &ada.id, Role::Owner, member_journal("member.update", &ada)).await,
        ErrorCode::NotFound,
    );
    f.store.set_member_role(&a, &ada.id, Role::Reader, member_journal("member.update", &ada)).await.unwrap();
    assert_eq!(f.store.load_members(&a).await.unwrap(), vec![Membership { role: Role::Reader, ..ada_a.clone() }]);
    let actions: Vec<String> = f.audit_log(&a).await.into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["tenant.create", "member.add", "member.update"], "refused changes journal nothing");
    assert_eq!(f.event_log(&a).await.len(), 2, "each change made its event in the tenant");
    let (_, _, all) = f.store.load_people().await.unwrap();
    assert_eq!(all.len(), 2);
    f.store.remove_member(&a, &ada.id, member_journal("member.remove", &ada)).await.unwrap();
    assert!(f.store.load_members(&a).await.unwrap().is_empty());
    assert_code(
        f.store.set_member_role(&a, &ada.id, Role::Owner, member_journal("member.update", &ada)).await,
        ErrorCode::NotFound,
    );
    f.store.insert_member(&a, &ada_a, member_journal("member.add", &ada)).await.unwrap();
    f.store.purge_tenant(&a).await.unwrap();
    let (users, _, left) = f.store.load_people().await.unwrap();
    let left: Vec<(String, String, Role)> =
        left.into_iter().map(|m| (m.tenant_id.to_string(), m.user_id.to_string(), m.role)).collect();
    assert_eq!(left, vec![(tb.id.to_string(), tom.id.to_string(), Role::Reader)], "only the purged tenant's went");
    assert_eq!(users.len(), 2, "users belong to the install, not to a tenant");
}

fn invitation(tenant: &Tenant, email: &str, role: Role, at: i64) -> InvitationRecord {
    InvitationRecord {
        id: InviteId::generate(),
        tenant_id: tenant.id.clone(),
        email: email.into(),
        role,
        hash: SecretHash::of(&format!("invitation of {email} at {at}")),
        created_at: Timestamp::from_millis(at),
        expires_at: Timestamp::from_millis(at + 10_000),
        created_by: "contract".into(),
    }
}

pub async fn an_invitation_is_listed_in_its_tenant_until_taken_replaced_or_expired(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let (tb, other) = f.tenant("globex").await;
    let first = invitation(&ta, "grace@example.com", Role::Writer, 1_000);
    f.store.insert_invitation(&first).await.unwrap();
    let theirs = invitation(&tb, "grace@example.com", Role::Reader, 1_000);
    f.store.insert_invitation(&theirs).await.unwrap();
    assert_eq!(f.store.list_invitations(&a).await.unwrap(), vec![first.clone()]);
    assert_eq!(f.store.get_invitation(&first.id).await.unwrap(), Some(first.clone()));
    // A new invitation of the same email to the same tenant replaces the old one.
    let second = invitation(&ta, "grace@example.com", Role::Admin, 2_000);
    f.store.insert_invitation(&second).await.unwrap();
    assert_eq!(f.store.list_invitations(&a).await.unwrap(), vec![second.clone()]);
    assert_eq!(f.store.get_invitation(&first.id).await.unwrap(), None);
    // Taken once.
    assert!(f.store.delete_invitation(&second.id).await.unwrap());
    assert!(!f.store.delete_invitation(&second.id).await.unwrap());
    assert!(f.store.list_invitations(&a).await.unwrap().is_empty());
    assert_eq!(f.store.list_invitations(&other).await.unwrap(), vec![theirs.clone()]);
    // Expired ones go with the ended sessions.
    f.store.delete_ended_sessions(Timestamp::from_millis(11_000), 1_000).await.unwrap();
    assert!(f.store.list_invitations(&other).await.unwrap().is_empty());
}
