//! `tenantry`: parses the command line and hands over to the server or the client. No logic here.

use clap::Parser;
use tenantry::cli::{Cli, Command};
use tenantry::config::{unknown_env_vars, Overrides, ServeConfig};

fn init_logging(filter: &str) {
    let filter = std::env::var("TENANTRY_LOG").unwrap_or_else(|_| filter.to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: a log file or collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .try_init();
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are "errors" too; under --json a usage error is a JSON document.
        Err(e) if e.use_stderr() && std::env::args().any(|a| a == "--json") => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
            let usage = tenantry::cli::usage_failure(format!("{first} (tenantry --help lists the commands)"));
            std::process::exit(tenantry::cli::report_failure(&usage, true).into());
        }
        Err(e) => e.exit(),
    };
    let as_json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tenantry: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let cfg = ServeConfig::load(Overrides {
                    listen: args.listen,
                    data: args.data,
                    config: args.config,
                    admin_key: args.admin_key,
                })?;
                init_logging(&cfg.log);
                for var in unknown_env_vars() {
                    tracing::warn!("{var} is set but Tenantry does not know it (a typo?)");
                }
                tenantry::server::run(cfg).await
            }
            _ => tenantry::cli::run(cli).await,
        }
    });
    if let Err(e) = result {
        std::process::exit(tenantry::cli::report_failure(&e, as_json).into());
    }
}
