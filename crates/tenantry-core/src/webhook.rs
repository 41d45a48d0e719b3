//! Webhooks (API.md §7): subscriptions by event type and path glob, the signature on every
//! delivery, the retry schedule, and the guard that keeps deliveries off private networks (a
//! tenant must not be able to make the server call its own loopback, LAN or cloud metadata).

use crate::error::{Error, Result};
use crate::events::Event;
use crate::ids::WebhookId;
use crate::time::Timestamp;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest accepted target URL.
pub const MAX_URL_BYTES: usize = 2048;
/// At most this many webhooks per tenant.
pub const MAX_WEBHOOKS_PER_TENANT: usize = 100;
/// Header carrying the signature (API.md §7).
pub const SIGNATURE_HEADER: &str = "Tenantry-Signature";

/// A webhook as the API shows it (never its secret, which is shown once at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: WebhookId,
    pub url: String,
    pub events: Vec<String>,
    pub path_glob: Option<String>,
    /// False once disabled after repeated failures (or by an admin); no deliveries are made.
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    pub created_by: String,
}

impl Webhook {
    pub fn wants(&self, event: &Event) -> bool {
        wants(&self.events, self.path_glob.as_deref(), event)
    }
}

/// Whether a subscription to `events` (types, or `*`) and `path_glob` wants `event`: its type is
/// subscribed and, with a glob, its path matches.
pub fn wants(events: &[String], path_glob: Option<&str>, event: &Event) -> bool {
    events.iter().any(|t| t == &event.kind || t == "*")
        && match path_glob {
            None => true,
            Some(glob) => event.path.as_deref().is_some_and(|p| glob_matches(glob, p)),
        }
}

/// Checks a target URL's shape: `http` or `https`, a host, no credentials.
pub fn parse_target(raw: &str) -> Result<url::Url> {
    let bad = |why: &str| Error::invalid_request(format!("invalid webhook `url`: {why}"));
    if raw.len() > MAX_URL_BYTES {
        return Err(bad("longer than 2048 bytes"));
    }
    let url = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host().is_none() {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials in the URL are not allowed; use the signing secret"));
    }
    Ok(url)
}

/// The IP address a URL names literally, if its host is one.
pub fn literal_address(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
        url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
        url::Host::Domain(_) => None,
    }
}

/// Why a delivery may not connect to `ip`, or `None` when it is a public address.
pub fn address_refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_refusal(v4),
        IpAddr::V6(v6) => v6_refusal(v6),
    }
}

fn v4_refusal(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    let n = u32::from(a);
    let within = |base: [u8; 4], bits: u32| n >> (32 - bits) == u32::from(Ipv4Addr::from(base)) >> (32 - bits);
    Some(match () {
        _ if within([0, 0, 0, 0], 8) => "a 'this network' address (0.0.0.0/8)",
        _ if within([127, 0, 0, 0], 8) => "a loopback address",
        _ if within([10, 0, 0, 0], 8) || within([172, 16, 0, 0], 12) || within([192, 168, 0, 0], 16) => {
            "a private address"
        }
        _ if within([100, 64, 0, 0], 10) => "a carrier-grade NAT address (100.64.0.0/10)",
        _ if within([169, 254, 0, 0], 16) => "a link-local or cloud metadata address",
        _ if within([192, 0, 0, 0], 24) => "an IETF protocol address (192.0.0.0/24)",
        _ if within([192, 0, 2, 0], 24) || within([198, 51, 100, 0], 24) || within([203, 0, 113, 0], 24) => {
            "a documentation address"
        }
        _ if within([198, 18, 0, 0], 15) => "a benchmarking address (198.18.0.0/15)",
        _ if o[0] >= 224 => "a multicast, reserved or broadcast address",
        _ => return None,
    })
}

fn v6_refusal(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    let embedded_v4 =
        |hi: usize| Ipv4Addr::new((s[hi] >> 8) as u8, s[hi] as u8, (s[hi + 1] >> 8) as u8, s[hi + 1] as u8);
    if a.is_unspecified() {
        return Some("the unspecified address");
    }
    if a.is_loopback() {
        return Some("a loopback address");
    }
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d): judge the IPv4 address.
    if s[0..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return v4_refusal(embedded_v4(6)).or(if s[5] == 0 { Some("an IPv4-compatible address") } else { None });
    }
    // NAT64, well-known prefix 64:ff9b::/96: the translator reaches the embedded IPv4 address.
    if s[0..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_refusal(embedded_v4(6));
    }
    Some(match s[0] {
        // NAT64 local-use prefix 64:ff9b:1::/48: translates into the operator's own network.
        0x64 if s[1] == 0xff9b && s[2] == 1 => "a local-use NAT64 address (64:ff9b:1::/48)",
        // 6to4 (2002::/16) carries an IPv4 address in bits 16..48.
        0x2002 => return v4_refusal(embedded_v4(1)),
        0x2001 if s[1] == 0 => "a Teredo address (2001::/32)",
        0x2001 if s[1] == 0xdb8 => "a documentation address (2001:db8::/32)",
        x if x & 0xfe00 == 0xfc00 => "a unique local address (fc00::/7)",
        x if x & 0xffc0 == 0xfe80 => "a link-local address (fe80::/10)",
        x if x & 0xffc0 == 0xfec0 => "a site-local address (fec0::/10)",
        x if x & 0xff00 == 0xff00 => "a multicast address",
        0x100 if s[1..4] == [0, 0, 0] => "a discard-only address (100::/64)",
        _ => return None,
    })
}

/// Refuses a target address unless private networks are allowed.
pub fn check_address(ip: IpAddr, allow_private: bool) -> Result<()> {
    match address_refusal(ip) {
        Some(why) if !allow_private => Err(Error::invalid_request(format!(
            "webhook target {ip} is {why}; deliveries go only to public addresses \
             (the operator can set webhooks.allow_private_networks = true)"
        ))),
        _ => Ok(()),
    }
}

/// Validates a `path_glob` (see [`crate::glob`]).
pub fn parse_glob(raw: &str) -> Result<String> {
    crate::glob::parse(raw)
}

/// Matches `path` against a glob (see [`crate::glob`]).
pub fn glob_matches(glob: &str, path: &str) -> bool {
    crate::glob::matches(glob, path)
}

/// A fresh signing secret.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    format!("whsec_{}", hex::encode(b))
}

/// Checks a caller-chosen secret: 16 to 256 printable ASCII characters.
pub fn parse_secret(raw: &str) -> Result<String> {
    if raw.len() < 16 || raw.len() > 256 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid_request("`secret` must be 16 to 256 printable ASCII characters"));
    }
    Ok(raw.to_owned())
}

/// The `Tenantry-Signature` value: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={unix_seconds},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The wait before attempt `attempt + 1` after `attempt` failed: `base` doubled per attempt, at
/// most an hour, plus up to 10% jitter so many failing deliveries do not retry in lockstep.
pub fn retry_delay_ms(attempt: u32, base_ms: u64) -> u64 {
    let raw = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(20)).min(3_600_000);
    use rand::Rng;
    raw + rand::thread_rng().gen_range(0..=raw / 10)
}

/// Looks host names up (the server's resolver; tests may substitute one).
#[async_trait::async_trait]
pub trait HostResolver: Send + Sync {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>>;
}

/// Refuses a target whose host is, or resolves to, an address deliveries may not reach. Every
/// address of the answer must pass: the connection may use any of them.
pub async fn vet_target(url: &url::Url, resolver: &dyn HostResolver, allow_private: bool) -> Result<()> {
    if literal_address(url).is_some() {
        return vet_literal_target(url, allow_private);
    }
    if allow_private {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = resolver.resolve(host, port).await?;
    if addrs.is_empty() {
        return Err(Error::invalid_request(format!("webhook host {host} does not resolve")));
    }
    for ip in addrs {
        check_address(ip, allow_private)?;
    }
    Ok(())
}

/// The check that needs no name resolution: a target written as an IP address must not be a
/// refused one. (A host name is checked again at every delivery, on the addresses connected to.)
pub fn vet_literal_target(url: &url::Url, allow_private: bool) -> Result<()> {
    match literal_address(url) {
        Some(ip) => check_address(ip, allow_private),
        None => Ok(()),
    }
}

/// One attempt at delivering one event, as `GET /v1/webhooks/{id}/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    pub id: u64,
    pub event_seq: u64,
    pub event_type: String,
    pub attempt: u32,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// `delivered`, `retrying` (another attempt is scheduled) or `failed` (no more attempts).
    pub outcome: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused() {
        let refused = [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ];
        for a in refused {
            let ip: IpAddr = a.parse().unwrap();
            assert!(address_refusal(ip).is_some(), "{a} should be refused");
            assert!(check_address(ip, false).is_err());
            assert!(check_address(ip, true).is_ok(), "{a} allowed when private networks are");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "2a00:1450:4001::1",
        ];
        for a in allowed {
            assert_eq!(address_refusal(a.parse().unwrap()), None, "{a} should be allowed");
        }
    }

    #[test]
    fn target_urls_need_http_a_host_and_no_credentials() {
        assert!(parse_target("https://hooks.example.com/x?y=1").is_ok());
        for bad in ["ftp://example.com", "not a url", "https://user:pw@example.com/", "file:///etc/passwd"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        let u = parse_target("http://[::1]:8080/").unwrap();
        assert_eq!(literal_address(&u), Some("::1".parse().unwrap()));
        let u = parse_target("http://0x7f.1/").unwrap();
        assert_eq!(literal_address(&u), Some("127.0.0.1".parse().unwrap()), "odd IPv4 spellings normalize");
        assert_eq!(literal_address(&parse_target("http://example.com").unwrap()), None);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Known answer from Python's hmac module: HMAC-SHA256("secret", "1700000000.{}").
        let sig = signature("secret", 1_700_000_000, b"{}");
        assert_eq!(sig, "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163");
        assert_ne!(sig, signature("other", 1_700_000_000, b"{}"));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        assert!((1000..=1100).contains(&retry_delay_ms(1, 1000)));
        assert!((4000..=4400).contains(&retry_delay_ms(3, 1000)));
        assert!(retry_delay_ms(40, 1000) <= 3_960_000);
    }
}
