//! The command line (API.md §1): `serve`, and the client commands that talk to a running server.
//! Human output is tables and `[slug] ...` lines; `--json` prints exactly one JSON document.

mod context;
mod data;
mod db;
mod export_sink;
mod failure;
mod files;
mod keys;
mod migrate;
mod output;
mod people;
mod tenants;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub use context::Context;

#[derive(Debug, Parser)]
#[command(
    name = "tenantry",
    version,
    about = "Multi-tenant workspace server and its command-line client",
    after_help = failure::EXIT_STATUS_HELP
)]
pub struct Cli {
    /// Print exactly one JSON document on standard output (on failure, the error document, also
    /// on standard error).
    #[arg(long, global = true)]
    pub json: bool,
    /// Server address.
    #[arg(long, global = true, env = "TENANTRY_URL", default_value = "http://127.0.0.1:7070")]
    pub url: String,
    /// The key to send (a tenant key, or the operator key). A tenant key given here or by
    /// TENANTRY_KEY acts on its own tenant, even when another one is active.
    #[arg(long, global = true, env = "TENANTRY_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// The tenant to act on (slug).
    #[arg(long, global = true, env = "TENANTRY_TENANT")]
    pub tenant: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Tenant administration (operator key) and the active-tenant context.
    Tenant {
        #[command(subcommand)]
        cmd: TenantCmd,
    },
    /// API keys of the current tenant.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// People (the operator's): accounts that sign in to the admin page and the API.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Members of the current tenant: people with a role in it (admin keys).
    Member {
        #[command(subcommand)]
        cmd: MemberCmd,
    },
    /// Files of the current tenant.
    Fs {
        #[command(subcommand)]
        cmd: FsCmd,
    },
    /// Agent memory of the current tenant: JSON values by namespace and key.
    Mem {
        #[command(subcommand)]
        cmd: MemCmd,
    },
    /// The current tenant's change events; --follow streams them live.
    Events(EventsArgs),
    /// Webhooks of the current tenant (admin keys).
    Webhook {
        #[command(subcommand)]
        cmd: WebhookCmd,
    },
    /// The current tenant's audit log; `audit verify` checks its hash chain.
    Audit(AuditArgs),
    /// Copy an existing single-tenant folder into the current tenant's files.
    Migrate {
        /// The folder; its files keep their paths relative to it.
        #[arg(long)]
        from: PathBuf,
        /// Only print what would be copied.
        #[arg(long)]
        dry_run: bool,
    },
    /// Which tenant and key the client acts as.
    Whoami,
    /// PostgreSQL: prepare a database (`db migrate --url postgres://OWNER@HOST/DB`), or copy an
    /// embedded install into one (`db copy --from DATA --to postgres://OWNER@HOST/DB`).
    Db {
        #[command(subcommand)]
        cmd: DbCmd,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TENANTRY_LISTEN")]
    pub listen: Option<String>,
    /// Data directory.
    #[arg(long, env = "TENANTRY_DATA")]
    pub data: Option<PathBuf>,
    /// TOML configuration file (`tenantry config default` prints an example).
    #[arg(long, env = "TENANTRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// The operator key; generated and stored in DATA/admin.key when unset.
    #[arg(long, env = "TENANTRY_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Apply the schema's pending migrations as the role that owns the tables (the database URL
    /// is --url, or TENANTRY_DATABASE_URL), and grant the server's role row access to them.
    Migrate {
        /// The role `tenantry serve` connects as: it gets rows, and owns nothing.
        #[arg(long, default_value = "tenantry_app")]
        app_role: String,
    },
    /// Copy a whole embedded install (a stopped server's data directory) into a PostgreSQL
    /// database, every tenant verified against its source. Resumable: a tenant the database holds
    /// already is checked, not copied again.
    Copy {
        /// The data directory of the SQLite install (`tenantry serve --data`); no server may be
        /// running on it.
        #[arg(long)]
        from: PathBuf,
        /// The database, as the role that owns the tables (the one `db migrate` ran as).
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print a commented example configuration file.
    Default,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant; prints its owner key once.
    Create {
        slug: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        tier: Option<String>,
        #[arg(long)]
        placement: Option<String>,
        /// A custom domain (repeatable).
        #[arg(long = "domain")]
        domains: Vec<String>,
        /// Metadata as a JSON object.
        #[arg(long)]
        metadata: Option<String>,
    },
    /// List tenants.
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one tenant.
    Show { slug: Option<String> },
    /// Change a tenant's name, tier, quotas, metadata or domains.
    Update {
        slug: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        tier: Option<String>,
        /// A quota override NAME=VALUE (VALUE `null` = unlimited); repeatable.
        #[arg(long = "quota")]
        quotas: Vec<String>,
        #[arg(long)]
        metadata: Option<String>,
        /// Replace the custom domains (repeatable); `--clear-domains` removes them all.
        #[arg(long = "domain")]
        domains: Vec<String>,
        #[arg(long)]
        clear_domains: bool,
    },
    /// Suspend: tenant keys get 403 until resumed.
    Suspend { slug: String },
    /// Resume a suspended tenant.
    Resume { slug: String },
    /// Archive: keys stop working, data is kept.
    Delete {
        slug: String,
        #[arg(long)]
        yes: bool,
    },
    /// Restore an archived tenant.
    Restore { slug: String },
    /// Erase an archived tenant's data for good.
    Purge {
        slug: String,
        #[arg(long)]
        yes: bool,
    },
    /// Usage and limits (this month, or --from/--to), with a per-day chart; --csv writes the
    /// billing export.
    Usage {
        slug: Option<String>,
        /// First day (YYYY-MM-DD), default the start of this month.
        #[arg(long)]
        from: Option<String>,
        /// Day after the last (YYYY-MM-DD), default the start of next month.
        #[arg(long)]
        to: Option<String>,
        /// day or month
        #[arg(long, default_value = "day")]
        granularity: String,
        /// Write the CSV billing export to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Write the whole tenant as a `.tenantry` bundle (docs/BUNDLE.md) and verify it.
    Export {
        slug: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Include webhook signing secrets.
        #[arg(long)]
        include_secrets: bool,
    },
    /// Load a `.tenantry` bundle into the tenant: verified whole before anything changes, then
    /// applied all at once.
    Import {
        slug: String,
        bundle: PathBuf,
        /// For paths and memory keys holding different content: skip (keep the tenant's),
        /// overwrite (take the bundle's) or rename (keep both; the incoming one gets `.imported`).
        #[arg(long, default_value = "skip")]
        on_conflict: String,
        /// Whose name, tier, quotas, metadata and domains the tenant keeps: auto (the bundle's
        /// when the tenant holds no data, or with --on-conflict overwrite), keep or replace.
        #[arg(long, default_value = "auto")]
        settings: String,
    },
    /// Move the tenant's data to `shared` or `dedicated` placement while it keeps serving.
    Move {
        slug: String,
        /// shared or dedicated
        #[arg(long)]
        to: String,
    },
    /// Make SLUG the active tenant of this client; --clear forgets the active tenant.
    Switch {
        #[arg(required_unless_present = "clear")]
        slug: Option<String>,
        #[arg(long, conflicts_with = "slug")]
        clear: bool,
    },
    /// Which tenant the client acts on, and why.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create a key; prints its secret once.
    Create {
        name: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        prefix: Option<String>,
        /// RFC 3339 time after which the key stops working.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List the tenant's keys.
    List,
    /// Revoke a key at once.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user. With --password-stdin the password is read from one line of standard
    /// input; without, the user cannot sign in until `user passwd` sets one.
    Create {
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// The operator's rights over every tenant.
        #[arg(long)]
        super_admin: bool,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List every user.
    List,
    /// One user, by id (usr_...) or email.
    Show { user: String },
    /// Disable a user (signed out everywhere at once), or with --enable let them in again.
    Disable {
        user: String,
        #[arg(long)]
        enable: bool,
    },
    /// Set a user's password from one line of standard input (signed out everywhere at once).
    Passwd { user: String },
}

#[derive(Debug, Subcommand)]
pub enum MemberCmd {
    /// Invite someone by email with a role (prints the one-time invitation token); with the
    /// operator key, an existing account is added at once.
    Add {
        email: String,
        #[arg(long)]
        role: String,
    },
    /// List the tenant's members and the invitations not accepted yet.
    List,
    /// Change a member's role.
    SetRole {
        /// The member's user id (usr_...).
        user: String,
        #[arg(long)]
        role: String,
    },
    /// Remove a member (usr_...), or withdraw an invitation (inv_...).
    Rm { user: String },
}

#[derive(Debug, Subcommand)]
pub enum FsCmd {
    /// Write a file from LOCAL_FILE, or standard input.
    Put {
        path: String,
        local_file: Option<PathBuf>,
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Read a file to standard output (bytes unchanged) or to -o FILE.
    Get {
        path: String,
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// List the files and folders directly under PREFIX (--json: folder items have only `kind`
    /// and `path`), or with --recursive every file under it.
    Ls {
        prefix: Option<String>,
        #[arg(long, short = 'r')]
        recursive: bool,
    },
    /// Delete a file.
    Rm { path: String },
    /// Search text files and memory values: words (all must match), "phrases", prefix*, OR, -exclusion.
    Search {
        query: String,
        /// Only files under this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// `file` or `memory`.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemCmd {
    /// Set NAMESPACE KEY to a JSON VALUE (standard input when absent).
    Set {
        namespace: String,
        // Not `key`: that id is taken by the global `--key` option.
        #[arg(value_name = "KEY")]
        entry: String,
        value: Option<String>,
        /// Expire after this many seconds.
        #[arg(long)]
        ttl: Option<u64>,
        /// Store VALUE as a JSON string instead of parsing it as JSON.
        #[arg(long)]
        string: bool,
    },
    /// Print a value.
    Get {
        namespace: String,
        #[arg(value_name = "KEY")]
        entry: String,
    },
    /// List a namespace's keys.
    Ls {
        namespace: String,
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Delete a value.
    Rm {
        namespace: String,
        #[arg(value_name = "KEY")]
        entry: String,
    },
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Events after this seq (with --follow: resume after it).
    #[arg(long)]
    pub after: Option<u64>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Keep streaming new events as they happen.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCmd {
    /// Create a webhook; prints its signing secret once.
    Create {
        /// Where deliveries are POSTed (not `url`: that id is the global `--url` option).
        #[arg(value_name = "URL")]
        target: String,
        /// An event type to deliver (repeatable); all types when absent.
        #[arg(long = "event")]
        events: Vec<String>,
        /// Only events about paths matching this glob (`*` within a segment, `**` across).
        #[arg(long)]
        path_glob: Option<String>,
        /// The signing secret (16+ characters); generated when absent.
        #[arg(long)]
        secret: Option<String>,
    },
    /// List the tenant's webhooks.
    List,
    /// Delete a webhook with its pending deliveries.
    Rm { id: String },
    /// Recent delivery attempts of a webhook.
    Deliveries { id: String },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub cmd: Option<AuditCmd>,
    /// Entries after this seq.
    #[arg(long)]
    pub after: Option<u64>,
    /// Only this action (e.g. file.write).
    #[arg(long)]
    pub action: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Walk the tenant's audit hash chain and report the first broken link.
    Verify,
}

pub use failure::{report as report_failure, usage as usage_failure};

/// Runs a client command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Context::new(&cli);
    // Commands that send no request need no key.
    let local = matches!(
        cli.command,
        Command::Config { .. } | Command::Db { .. } | Command::Tenant { cmd: TenantCmd::Switch { slug: None, .. } }
    );
    if !local {
        ctx.require_key()?;
    }
    match cli.command {
        Command::Serve(_) => unreachable!("serve is dispatched by main"),
        Command::Config { cmd: ConfigCmd::Default } => {
            print!("{}", crate::config::EXAMPLE_CONFIG);
            Ok(())
        }
        Command::Tenant { cmd } => tenants::run(&ctx, cmd).await,
        Command::Key { cmd } => keys::run(&ctx, cmd).await,
        Command::User { cmd } => people::user(&ctx, cmd).await,
        Command::Member { cmd } => people::member(&ctx, cmd).await,
        Command::Fs { cmd } => files::run(&ctx, cmd).await,
        Command::Mem { cmd } => data::mem(&ctx, cmd).await,
        Command::Events(args) => data::events(&ctx, args).await,
        Command::Webhook { cmd } => data::webhook(&ctx, cmd).await,
        Command::Audit(args) => keys::audit(&ctx, args).await,
        Command::Migrate { from, dry_run } => migrate::run(&ctx, from, dry_run).await,
        Command::Whoami => keys::whoami(&ctx).await,
        Command::Db { cmd } => db::run(&ctx, cmd).await,
    }
}
