//! Shared by the test binaries that run the real `tenantry` binary: a command with a clean
//! environment, and `serve` started on port 0 and read until it says where it listens.
#![allow(dead_code)] // each test binary uses its own part of this

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_tenantry");

/// `tenantry` with no `TENANTRY_*` variable inherited from the environment running the tests.
pub fn clean_command() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("TENANTRY_") {
            c.env_remove(k);
        }
    }
    c.env("TENANTRY_LOG", "error");
    c
}

/// A port free on loopback now (for a server a test starts on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `tenantry serve` child.
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// What it printed up to and including the "listening on" line.
    pub stdout_lines: Vec<String>,
}

/// Spawns `cmd` (a `serve` command listening on port 0) and waits until it listens. The caller
/// owns the child and kills and waits for it.
#[allow(clippy::zombie_processes)]
pub fn start_serving(mut cmd: Command) -> Served {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            let _ = child.wait();
            panic!("serve exited before listening: {lines:?}");
        }
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).map(str::to_owned);
        lines.push(line.trim_end().to_owned());
        if let Some(url) = url.filter(|_| line.contains("listening on")) {
            // Then where to go, up to an empty line.
            loop {
                let mut more = String::new();
                if reader.read_line(&mut more).unwrap() == 0 || more.trim().is_empty() {
                    break;
                }
                lines.push(more.trim_end().to_owned());
            }
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in reader.lines() {});
            return Served { child, url, stdout_lines: lines };
        }
    }
}
