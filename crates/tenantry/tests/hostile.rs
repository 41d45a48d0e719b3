//! Hostile input: huge heads, slow heads and bodies, oversized and malformed bodies, invalid
//! UTF-8, and 10,000 idle connections. The server answers with a clear 4xx or closes the
//! connection, stays responsive, and its memory stays bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

const OPERATOR: &str = "hostile-test-operator";

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, limits: &str) -> Server {
    let config = dir.join("tenantry.toml");
    std::fs::write(&config, format!("[limits]\n{limits}\n")).unwrap();
    let mut cmd = common::clean_command();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&config)
        .env("TENANTRY_ADMIN_KEY", OPERATOR);
    let served = common::start_serving(cmd);
    Server { child: served.child, addr: served.url.trim_start_matches("http://").to_owned() }
}

/// Sends raw bytes and returns what came back before the server closed or `wait` passed.
fn exchange(addr: &str, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn request(method: &str, path: &str, headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\n").into_bytes();
    r.extend_from_slice(headers);
    r.extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
    r.extend_from_slice(body);
    r
}

fn status_of(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn healthy(addr: &str) -> bool {
    status_of(&exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(5)))
        == 200
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_huge_head_gets_431_and_the_server_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "max_header_bytes = 16384");
    let big = format!("X-Filler: {}\r\n", "a".repeat(100_000));
    let answer = exchange(&server.addr, &request("GET", "/v1/whoami", big.as_bytes(), b""), Duration::from_secs(5));
    assert_eq!(status_of(&answer), 431, "{answer}");
    let many: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = exchange(&server.addr, &request("GET", "/v1/whoami", many.as_bytes(), b""), Duration::from_secs(5));
    assert_eq!(status_of(&answer), 431, "too many headers: {answer}");
    assert!(healthy(&server.addr));
}

/// hyper bounds its read buffer, not the head: heads of up to ~100 KB were served under the
/// documented 64 KiB limit, when sent in one piece.
#[test]
fn a_head_just_over_the_limit_gets_431_and_one_under_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "max_header_bytes = 65536");
    let over = format!("X-Filler: {}\r\n", "a".repeat(70_000));
    let answer = exchange(&server.addr, &request("GET", "/healthz", over.as_bytes(), b""), Duration::from_secs(5));
    assert_eq!(status_of(&answer), 431, "{answer}");
    assert!(answer.contains("\"code\":\"invalid_request\"") && answer.contains("over 65536 bytes"), "{answer}");
    let under = format!("X-Filler: {}\r\n", "a".repeat(60_000));
    let answer = exchange(&server.addr, &request("GET", "/healthz", under.as_bytes(), b""), Duration::from_secs(5));
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(healthy(&server.addr));
}

#[test]
fn a_slow_head_is_cut_off_and_an_idle_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "header_timeout_secs = 1");
    let started = Instant::now();
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap(); // never finishes the head
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(started.elapsed() < Duration::from_secs(9), "the connection was not closed");
    let idle = TcpStream::connect(&server.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    let n = (&idle).read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "an idle connection is closed by the server");
    assert!(healthy(&server.addr));
}

#[test]
fn a_slow_body_gets_408() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "request_timeout_secs = 1");
    let mut s = TcpStream::connect(&server.addr).unwrap();
    let head = format!(
        "PUT /v1/files/slow.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\nContent-Length: 1000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&[b'x'; 10]).unwrap(); // and then nothing
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = vec![0u8; 4096];
    let n = s.read(&mut out).unwrap_or(0);
    let answer = String::from_utf8_lossy(&out[..n]);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(answer.contains("\"request_id\""));
    let answer = exchange(&server.addr, &request("GET", "/v1/files/slow.bin", b"", b""), Duration::from_secs(5));
    assert_eq!(status_of(&answer), 404, "nothing was written: {answer}");
}

#[test]
fn malformed_bodies_and_encodings_are_clear_4xx_never_500() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "max_json_bytes = 4096");
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (request("POST", "/v1/tenants", b"Content-Type: application/json\r\n", b"{\"slug\": \"a\xff\xfe\"}"), 400, "invalid_request"),
        (request("POST", "/v1/tenants", b"Content-Type: text/plain\r\n", b"slug=acme"), 400, "invalid_request"),
        (request("POST", "/v1/tenants", b"", &[0u8, 159, 146, 150]), 400, "invalid_request"),
        (request("POST", "/v1/tenants", b"", &[b' '; 10]), 400, "invalid_request"),
        (request("POST", "/v1/tenants", b"", format!("{{\"slug\":\"x\",\"name\":\"{}\"}}", "n".repeat(5000)).as_bytes()), 413, "too_large"),
        (request("POST", "/v1/tenants", b"", b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]"), 400, "invalid_request"),
        (request("GET", "/v1/files/%C0%AF", b"", b""), 400, "invalid_path"),
        (request("GET", "/v1/files/a/%252e%252e/b", b"", b""), 404, "not_found"),
        (request("GET", "/v1/files?limit=-1", b"", b""), 400, "invalid_request"),
        (request("GET", "/v1/files?cursor=%ff", b"", b""), 400, "invalid_request"),
        (request("GET", "/v1/tenants/%ff", b"", b""), 400, "invalid_request"),
        (request("PATCH", "/v1/tenants/default", b"", b"{\"quotas\": {\"max_keys\": 1e400}}"), 400, "invalid_request"),
        (request("GET", "/v1/whoami", b"X-Tenant-ID: \xff\xfe\r\n", b""), 200, ""),
        (request("GET", "/t/%ff%fe/v1/whoami", b"", b""), 404, "tenant_not_found"),
    ];
    for (i, (raw, status, code)) in cases.into_iter().enumerate() {
        let answer = exchange(&server.addr, &raw, Duration::from_secs(5));
        assert_eq!(status_of(&answer), status, "case {i}: {answer}");
        if !code.is_empty() {
            assert!(answer.contains(&format!("\"code\":\"{code}\"")), "case {i}: {answer}");
        }
    }
    // A body larger than the file maximum is refused before it is all read.
    let answer = exchange(
        &server.addr,
        format!("PUT /v1/files/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\nContent-Length: 9999999999\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(healthy(&server.addr));
}

#[test]
fn ten_thousand_idle_connections_leave_the_server_responsive_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "header_timeout_secs = 60");
    assert!(healthy(&server.addr));
    let before = rss_kib(server.child.id());
    let mut idle = Vec::new();
    for _ in 0..10_000 {
        match TcpStream::connect(&server.addr) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("could not open idle connection {}: {e}", idle.len()),
        }
    }
    // Half of them start a request and stall.
    for s in idle.iter_mut().step_by(2) {
        let _ = s.write_all(b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\n");
    }
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    assert!(healthy(&server.addr), "a new client is served while 10,000 connections idle");
    let answered_in = started.elapsed();
    let during = rss_kib(server.child.id());
    drop(idle);
    std::thread::sleep(Duration::from_millis(500));
    assert!(healthy(&server.addr));
    let grown_mib = during.saturating_sub(before) / 1024;
    println!("idle connections: RSS {} MiB before, {} MiB with 10,000 open (+{grown_mib} MiB); a new request answered in {answered_in:?}", before / 1024, during / 1024);
    assert!(grown_mib < 256, "10,000 idle connections cost {grown_mib} MiB");
}
