//! Alibaba Cloud OpenAPI signature V3 (`ACS3-HMAC-SHA256`), which RAM, STS and ACK accept for
//! both their RPC-style (RAM, STS) and ROA-style (ACK) APIs. Pure: the time and the nonce
//! are inputs, so a signature can be checked against a fixed one.
//!
//! What is signed (Alibaba Cloud's "Request syntax and signature method V3"):
//! ```text
//! CanonicalRequest = Method \n CanonicalURI \n CanonicalQueryString \n CanonicalHeaders \n
//!                    SignedHeaders \n HexSha256(Body)
//! StringToSign     = "ACS3-HMAC-SHA256" \n HexSha256(CanonicalRequest)
//! Signature        = Hex(HmacSha256(AccessKeySecret, StringToSign))
//! Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<h1;h2>,Signature=<sig>
//! ```
//! Signed headers: `host`, `content-type` when there is one, and every `x-acs-*` header.
//! Rust has no official Alibaba SDK and reqsign signs only OSS, so this is the one
//! hand-written signer; OSS requests are signed by reqsign-aliyun-oss.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// The credentials a request is signed with: an AccessKey pair, and for STS credentials their
/// security token (sent as `x-acs-security-token`, signed like every `x-acs-*` header).
#[derive(Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub security_token: Option<String>,
}

impl std::fmt::Debug for AccessKey {
    // Never print the secret or the token (logs and status carry no secrets).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("security_token", &self.security_token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// One OpenAPI request before signing.
#[derive(Clone, Debug, PartialEq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// `/` for RPC-style APIs; the resource path for ROA-style ones (`/clusters/<id>`).
    pub path: &'a str,
    pub query: &'a BTreeMap<String, String>,
    pub action: &'a str,
    pub version: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// The headers to send with `request`: `host`, `x-acs-*` and `Authorization`.
/// `date` is `YYYY-MM-DDThh:mm:ssZ` (UTC); `nonce` is unique per request (replay protection).
pub fn sign(request: &Request<'_>, key: &AccessKey, date: &str, nonce: &str) -> Vec<(String, String)> {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    headers.insert("host".into(), request.host.into());
    headers.insert("x-acs-action".into(), request.action.into());
    headers.insert("x-acs-version".into(), request.version.into());
    headers.insert("x-acs-date".into(), date.into());
    headers.insert("x-acs-signature-nonce".into(), nonce.into());
    headers.insert("x-acs-content-sha256".into(), hex_sha256(request.body));
    if let Some(token) = &key.security_token {
        headers.insert("x-acs-security-token".into(), token.clone());
    }
    if let Some(content_type) = request.content_type {
        headers.insert("content-type".into(), content_type.into());
    }
    let signed_headers = headers.keys().cloned().collect::<Vec<_>>().join(";");
    let signature = signature(request, &headers, &signed_headers, &key.secret);
    let mut out: Vec<(String, String)> = headers.into_iter().collect();
    out.push((
        "authorization".into(),
        format!(
            "{ALGORITHM} Credential={},SignedHeaders={signed_headers},Signature={signature}",
            key.id
        ),
    ));
    out
}

fn signature(
    request: &Request<'_>,
    headers: &BTreeMap<String, String>,
    signed: &str,
    secret: &str,
) -> String {
    let canonical = canonical_request(request, headers, signed);
    let string_to_sign = format!("{ALGORITHM}\n{}", hex_sha256(canonical.as_bytes()));
    // HMAC accepts keys of any length: new_from_slice cannot fail for it.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(string_to_sign.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The canonical request of signature V3 (exposed for tests and the test bed's fake).
pub fn canonical_request(request: &Request<'_>, headers: &BTreeMap<String, String>, signed: &str) -> String {
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query),
        hex_sha256(request.body)
    )
}

/// Each path segment percent-encoded, `/` kept.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/').map(percent_encode).collect::<Vec<_>>().join("/")
}

/// Parameters sorted by name, names and values percent-encoded, `name=value` joined by `&`.
pub fn canonical_query(query: &BTreeMap<String, String>) -> String {
    query
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 encoding as Alibaba Cloud specifies it: only `A-Za-z0-9-_.~` stay as they are
/// (a space is `%20`, `*` is `%2A`), with upper-case hex digits.
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: Option<&str>) -> AccessKey {
        AccessKey {
            id: "LTAI-test".into(),
            secret: "s3cr3t-value".into(),
            security_token: token.map(str::to_string),
        }
    }

    fn request<'a>(query: &'a BTreeMap<String, String>) -> Request<'a> {
        Request {
            method: "POST",
            host: "ram.aliyuncs.com",
            path: "/",
            query,
            action: "GetRole",
            version: "2015-05-01",
            content_type: None,
            body: b"",
        }
    }

    #[test]
    fn values_are_encoded_as_rfc_3986_with_upper_case_hex() {
        assert_eq!(percent_encode("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
        let query = BTreeMap::from([
            ("b".to_string(), "2 3".to_string()),
            ("a".to_string(), "{\"x\":1}".to_string()),
        ]);
        assert_eq!(canonical_query(&query), "a=%7B%22x%22%3A1%7D&b=2%203");
    }

    #[test]
    fn the_canonical_request_has_every_part_in_order() {
        let query = BTreeMap::from([("RoleName".to_string(), "r".to_string())]);
        let req = request(&query);
        let headers = BTreeMap::from([
            ("host".to_string(), "ram.aliyuncs.com".to_string()),
            ("x-acs-action".to_string(), " GetRole ".to_string()),
        ]);
        let canonical = canonical_request(&req, &headers, "host;x-acs-action");
        assert_eq!(
            canonical,
            format!(
                "POST\n/\nRoleName=r\nhost:ram.aliyuncs.com\nx-acs-action:GetRole\n\nhost;x-acs-action\n{}",
                hex_sha256(b"")
            )
        );
        assert_eq!(canonical_uri("/clusters/c 1"), "/clusters/c%201");
    }

    #[test]
    fn the_authorization_header_names_the_key_and_every_signed_header() {
        let query = BTreeMap::new();
        let headers = sign(&request(&query), &key(Some("tok")), "2026-12-05T12:00:00Z", "n1");
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .expect("auth")
            .1;
        assert!(auth.starts_with(
            "ACS3-HMAC-SHA256 Credential=LTAI-test,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,Signature="
        ), "{auth}");
        let sig = auth.rsplit('=').next().expect("signature");
        assert_eq!(sig.len(), 64);
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "x-acs-security-token" && v == "tok")
        );
    }

    #[test]
    fn the_signature_depends_on_the_secret_the_time_the_nonce_and_every_parameter() {
        let query = BTreeMap::from([("RoleName".to_string(), "r".to_string())]);
        let other_query = BTreeMap::from([("RoleName".to_string(), "s".to_string())]);
        let auth = |q: &BTreeMap<String, String>, k: &AccessKey, date: &str, nonce: &str| {
            sign(&request(q), k, date, nonce)
                .into_iter()
                .find(|(h, _)| h == "authorization")
                .map(|(_, v)| v)
                .expect("auth")
        };
        let base = auth(&query, &key(None), "2026-12-05T12:00:00Z", "n1");
        assert_eq!(
            base,
            auth(&query, &key(None), "2026-12-05T12:00:00Z", "n1"),
            "deterministic"
        );
        let mut other_secret = key(None);
        other_secret.secret = "other".into();
        for different in [
            auth(&other_query, &key(None), "2026-12-05T12:00:00Z", "n1"),
            auth(&query, &other_secret, "2026-12-05T12:00:00Z", "n1"),
            auth(&query, &key(None), "2026-12-05T12:00:01Z", "n1"),
            auth(&query, &key(None), "2026-12-05T12:00:00Z", "n2"),
        ] {
            assert_ne!(base, different);
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret_or_the_token() {
        let shown = format!("{:?}", key(Some("the-token")));
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(!shown.contains("the-token"), "{shown}");
        assert!(shown.contains("LTAI-test"));
    }
}
