//! The store contract: what every backend of tenantry-core's [`Store`] must do, written once and
//! run by each backend from its own `tests/contract.rs`:
//!
//! ```ignore
//! struct Sqlite;
//! #[async_trait::async_trait]
//! impl tenantry_store_contract::Backend for Sqlite {
//!     async fn open(&self) -> tenantry_store_contract::Fixture { /* a fresh, empty store */ }
//!     async fn reopen(&self, f: tenantry_store_contract::Fixture) -> tenantry_store_contract::Fixture {
//!         /* close f's store, open a new one on the same storage */
//!     }
//! }
//! tenantry_store_contract::suite!(Sqlite);
//! ```
//!
//! Each behaviour is an `async fn(&dyn Backend)` in the module of its capability; [`suite!`]
//! makes one `#[tokio::test]` of each, named `<module>::<behaviour>`. A behaviour opens its own
//! store, so they run in parallel. Most are about tenant scoping: whatever one tenant does, a
//! second tenant's scope neither reads, counts, ranks, lists nor changes its rows.

use std::any::Any;
use std::sync::Arc;
use tenantry_core::events::{EventDraft, Journal};
use tenantry_core::model::{AuditDraft, FileMeta, Tenant};
use tenantry_core::path::TenantPath;
use tenantry_core::search::IndexDoc;
use tenantry_core::slug::Slug;
use tenantry_core::store::{FileWrite, Precondition, Store, TenantScope, WriteOutcome};
use tenantry_core::time::{Clock, SystemClock, Timestamp};
use tenantry_core::{Error, ErrorCode, Result};

pub mod audit;
pub mod durability;
pub mod events;
pub mod files;
pub mod import;
pub mod isolation;
pub mod keys;
pub mod memory;
pub mod people;
pub mod placement;
pub mod quotas;
pub mod search;
pub mod webhooks;

/// A backend under test: opens fresh, empty stores, and opens a store again on its storage.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn open(&self) -> Fixture;
    /// Closes the fixture's store ([`Health::close`](tenantry_core::store::Health::close)), lets
    /// it go, and opens a new store on the same storage, as a restart of the server does.
    async fn reopen(&self, fixture: Fixture) -> Fixture;
    /// Whether the backend's storage is there to test (a database server may be missing on a
    /// developer's machine: the behaviours then return at once, after saying so).
    fn available(&self) -> bool {
        true
    }
}

/// An open store and whatever keeps it alive (a temporary directory, a database to drop).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    _keep: Box<dyn Any + Send + Sync>,
}

impl Fixture {
    pub fn new(store: Arc<dyn Store>, keep: impl Any + Send + Sync) -> Fixture {
        Fixture { store, _keep: Box::new(keep) }
    }

    /// The store and what keeps its storage alive, for [`Backend::reopen`].
    pub fn into_parts(self) -> (Arc<dyn Store>, Box<dyn Any + Send + Sync>) {
        (self.store, self._keep)
    }

    /// Registers a new tenant (shared placement, no owner key) and returns its scope.
    pub async fn tenant(&self, slug: &str) -> (Tenant, TenantScope) {
        let tenant = Tenant::new(Slug::parse(slug).unwrap(), slug, "free", now());
        let scope = TenantScope::for_store_contract(&tenant);
        self.store.insert_tenant(&scope, &tenant, None, draft("tenant.create", slug)).await.unwrap();
        (tenant, scope)
    }

    /// Puts a text file with no limits and no precondition.
    pub async fn put(&self, scope: &TenantScope, path: &str, content: &str) -> (FileMeta, WriteOutcome) {
        self.put_with(scope, write(path, content.as_bytes())).await.unwrap()
    }

    pub async fn put_with(&self, scope: &TenantScope, w: FileWrite) -> Result<(FileMeta, WriteOutcome)> {
        let journal = file_journal(w.path.as_str());
        self.store.put_file(scope, w, journal).await
    }

    /// The tenant's whole audit log, in order.
    pub async fn audit_log(&self, scope: &TenantScope) -> Vec<tenantry_core::model::AuditEntry> {
        self.store.list_audit(scope, 0, None, 100_000).await.unwrap()
    }

    /// The tenant's whole event log, in order.
    pub async fn event_log(&self, scope: &TenantScope) -> Vec<tenantry_core::events::Event> {
        self.store.list_events(scope, 0, None, 100_000).await.unwrap()
    }
}

pub fn now() -> Timestamp {
    SystemClock.now()
}

pub fn path(p: &str) -> TenantPath {
    TenantPath::parse(p).unwrap()
}

pub fn draft(action: &str, target: &str) -> AuditDraft {
    AuditDraft {
        actor: "contract".into(),
        action: action.into(),
        target: target.into(),
        result: "ok".into(),
        request_id: "req_contract".into(),
        ip: "127.0.0.1".into(),
    }
}

/// The journal of a file write: its audit entry and a `file.written` event about `path`.
pub fn file_journal(p: &str) -> Journal {
    Journal::with_event(draft("file.write", p), EventDraft::new("file.written", "contract".into()).path(p))
}

/// A write of `content` at `p`: text content is indexed, no limits, no precondition.
pub fn write(p: &str, content: &[u8]) -> FileWrite {
    FileWrite {
        path: path(p),
        content: content.to_vec(),
        content_type: "text/plain".into(),
        precondition: Precondition::None,
        at: now(),
        max_storage_bytes: None,
        max_files: None,
        index: IndexDoc::of_file(content),
    }
}

/// A key record of `tenant` (its secret is never needed by the store).
pub fn key(tenant: &Tenant, name: &str) -> tenantry_core::model::KeyRecord {
    tenantry_core::model::KeyRecord {
        id: tenantry_core::ids::KeyId::generate(),
        tenant_id: tenant.id.clone(),
        name: name.into(),
        role: tenantry_core::role::Role::Writer,
        prefix: None,
        hash: tenantry_core::secret::SecretHash::of(&format!("secret of {name}")),
        created_at: now(),
        created_by: "contract".into(),
        expires_at: None,
        revoked_at: None,
    }
}

/// A memory write of `value` (JSON) under `namespace`/`key`, indexed as the service indexes it
/// (its strings, keys and numbers), without limits.
pub fn memory_write(namespace: &str, key: &str, value: serde_json::Value) -> tenantry_core::store::MemoryWrite {
    let index = IndexDoc::of_text(&tenantry_core::memory::searchable_text(&value));
    let value = value.to_string();
    tenantry_core::store::MemoryWrite {
        namespace: tenantry_core::memory::Namespace::parse(namespace).unwrap(),
        key: tenantry_core::memory::MemoryKey::parse(key).unwrap(),
        index,
        value,
        expires_at: None,
        at: now(),
        max_storage_bytes: None,
    }
}

/// The journal of a memory change.
pub fn memory_journal(namespace: &str, key: &str) -> Journal {
    Journal::with_event(
        draft("memory.set", &format!("{namespace}/{key}")),
        EventDraft::new("memory.set", "contract".into()).memory(namespace, key),
    )
}

/// Runs `task(0)`..`task(n - 1)` at once, each on its own tokio task; their results in order.
pub async fn concurrently<T, Fut>(n: usize, task: impl Fn(usize) -> Fut) -> Vec<T>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(task(i))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("a concurrent task panicked"));
    }
    out
}

/// Asserts `r` failed with `code`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(r: Result<T>, code: ErrorCode) -> Error {
    match r {
        Ok(v) => panic!("expected {}, got Ok({v:?})", code.as_str()),
        Err(e) => {
            assert_eq!(e.code, code, "{}", e.message);
            e
        }
    }
}

/// Makes one `#[tokio::test]` per behaviour, in a module per capability.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_module {
    ($backend:expr, $module:ident, [$($name:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if !$crate::Backend::available(&$backend) {
                        return;
                    }
                    $crate::$module::$name(&$backend).await
                }
            )*
        }
    };
}

/// Every behaviour of the contract, run against `$backend` (an expression of a type that
/// implements [`Backend`], e.g. a unit struct).
#[macro_export]
macro_rules! suite {
    ($backend:expr) => {
        $crate::suite_without_placement!($backend);
        $crate::__contract_module!(
            $backend,
            placement,
            [
                a_move_there_and_back_keeps_every_row_of_the_tenant,
                a_file_replaced_by_another_with_its_bytes_during_a_move_ends_right,
                every_kind_of_change_made_during_a_move_arrives,
                memberships_move_with_their_tenant,
                a_relays_position_moves_with_its_tenant,
            ]
        );
    };
}

/// Every behaviour but moves between placements, for a backend that has one placement only (it
/// refuses moves). Both backends in this workspace run [`suite!`].
#[macro_export]
macro_rules! suite_without_placement {
    ($backend:expr) => {
        $crate::__contract_module!($backend, durability, [everything_acknowledged_is_there_after_a_close_and_reopen]);
        $crate::__contract_module!(
            $backend,
            people,
            [
                users_and_sessions_read_back_and_end_with_the_users_password,
                memberships_are_their_tenants_rows_journaled_and_purged_with_it,
                an_invitation_is_listed_in_its_tenant_until_taken_replaced_or_expired,
            ]
        );
        $crate::__contract_module!(
            $backend,
            files,
            [
                a_put_file_reads_back_byte_for_byte_with_its_metadata,
                replacing_a_file_bumps_its_version_and_keeps_its_creation_time,
                a_large_file_reads_back_whole_and_by_range,
                a_read_racing_replacements_gets_one_whole_version,
                if_none_match_any_refuses_an_existing_file_and_changes_nothing,
                if_match_takes_only_the_current_etag,
                deleting_a_missing_file_is_not_found,
                a_delete_with_a_stale_etag_is_refused_and_changes_nothing,
                listings_are_in_path_order_direct_or_recursive_and_resume_after_a_cursor,
                a_listing_includes_the_file_at_its_own_prefix_only_when_asked,
                a_folder_lists_its_files_and_each_folder_under_it_once_in_path_order,
                usage_follows_every_put_replace_and_delete_exactly,
            ]
        );
        $crate::__contract_module!(
            $backend,
            quotas,
            [
                a_write_up_to_the_storage_limit_passes_and_one_byte_over_is_refused,
                the_file_limit_refuses_a_new_file_but_not_a_replacement,
                a_change_that_does_not_grow_usage_passes_over_a_lowered_limit,
                concurrent_writers_never_pass_the_storage_limit_together,
                concurrent_writers_never_pass_the_file_limit_together,
                memory_values_count_toward_the_storage_limit,
                concurrent_key_creations_never_pass_the_key_limit,
                a_refused_write_leaves_no_audit_entry_and_no_event,
                crossing_eighty_percent_of_a_limit_warns_once_right_after_the_change,
            ]
        );
        $crate::__contract_module!(
            $backend,
            isolation,
            [
                another_tenants_scope_reads_none_of_its_files,
                another_tenants_listing_and_usage_count_none_of_its_files,
                another_tenants_scope_cannot_delete_or_overwrite_its_files,
                another_tenants_scope_sees_none_of_its_memory,
                another_tenants_keys_are_neither_listed_nor_revocable,
                each_tenant_has_its_own_audit_chain_and_event_sequence,
                a_prefix_filter_on_events_keeps_only_paths_under_it,
                purging_a_tenant_erases_only_its_rows,
                usage_is_counted_per_tenant,
                another_tenants_search_finds_none_of_its_files_or_memory,
                metering_racing_a_purge_leaves_no_usage_of_the_purged_tenant,
            ]
        );
        $crate::__contract_module!(
            $backend,
            audit,
            [
                every_change_appends_one_linked_entry,
                concurrent_appends_keep_the_chain_unbroken_and_gapless,
                the_audit_listing_filters_by_action_and_resumes_after_a_seq,
                pruning_keeps_the_newest_entry_and_the_rest_verify_from_the_anchor,
                pruning_deletes_only_entries_older_than_the_cutoff_and_at_most_a_batch,
            ]
        );
        $crate::__contract_module!(
            $backend,
            events,
            [
                event_seqs_increase_by_one_without_gaps,
                sinks_hear_committed_events_in_order_and_nothing_refused,
                pruned_events_never_give_their_seq_back,
                a_published_event_takes_the_next_seq,
                a_relay_is_held_by_one_holder_until_its_lease_ends,
                pruning_keeps_the_events_a_relay_has_not_passed,
                a_reader_following_the_log_never_sees_a_later_event_before_an_earlier_one,
            ]
        );
        $crate::__contract_module!(
            $backend,
            memory,
            [
                a_value_reads_back_and_a_replacement_counts_its_new_size,
                an_expired_value_is_gone_from_reads_and_listings,
                reclaiming_expired_values_frees_their_storage,
                memory_listings_filter_by_prefix_in_key_order_and_resume,
                deleting_a_missing_value_is_not_found,
            ]
        );
        $crate::__contract_module!(
            $backend,
            search,
            [
                a_search_finds_documents_holding_every_term,
                a_replaced_or_deleted_file_is_no_longer_found_by_its_old_words,
                memory_values_are_found_within_their_namespace,
                another_tenants_documents_change_neither_hits_nor_scores,
                phrases_prefixes_alternatives_and_exclusions_find_what_they_say,
                a_prefix_matching_too_many_words_in_the_scope_is_refused,
                a_glob_narrows_the_hits_but_not_the_statistics,
                search_answers_as_a_brute_force_scan_of_the_tenants_documents,
            ]
        );
        $crate::__contract_module!(
            $backend,
            keys,
            [
                a_key_is_listed_until_revoked_and_then_carries_its_revocation,
                the_directory_loads_every_tenant_and_key,
                one_tenant_reads_back_with_all_its_keys_and_none_once_purged,
                revoked_keys_no_longer_count_toward_the_limit,
            ]
        );
        $crate::__contract_module!(
            $backend,
            webhooks,
            [
                a_wanted_event_queues_one_delivery_per_webhook_that_wants_it,
                a_failed_attempt_is_retried_at_its_time_and_a_delivered_one_is_done,
                repeated_failures_disable_a_webhook_and_enabling_it_clears_them,
                a_deleted_webhook_takes_its_pending_deliveries_and_log_with_it,
                webhooks_are_limited_and_scoped_to_their_tenant,
                due_deliveries_take_at_most_a_share_of_each_tenant,
                a_claimed_delivery_is_nobody_elses_until_its_lease_ends,
            ]
        );
        $crate::__contract_module!(
            $backend,
            import,
            [
                an_import_publishes_everything_staged_at_once,
                an_import_over_the_storage_limit_changes_nothing,
                an_aborted_import_leaves_nothing,
                the_conflict_policy_decides_only_where_content_differs,
                an_import_applies_the_bundles_settings_as_asked_and_reports_each_change,
            ]
        );
    };
}
