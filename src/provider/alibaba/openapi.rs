//! The one hand-written request layer for Alibaba Cloud's OpenAPI (RAM, STS, ACK): requests
//! signed with signature V3 (`signer`), sent on the operator's HTTPS stack (the same rustls
//! connector the AWS SDK uses), answers parsed as JSON, refusals mapped to `ApiError`.
//!
//! Hosts are the real ones (`ram.aliyuncs.com`, `sts.aliyuncs.com`, `cs.<region>.aliyuncs.com`)
//! in every request, signature and `Host` header. An endpoint override (emulators, the test
//! bed) keeps those hosts and changes only where they resolve and the scheme and port, so
//! what is signed and routed is what Alibaba Cloud would see.

use std::collections::BTreeMap;
use std::net::IpAddr;

use aws_smithy_http_client::{Connector, tls};
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use serde_json::Value;

use super::signer::{self, AccessKey};

/// Where Alibaba Cloud's hosts are reached: `https://<host>` normally; with an override
/// `http://127.0.0.1:5001`, every host is resolved to 127.0.0.1 and reached on port 5001 with
/// plain HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub scheme: &'static str,
    pub port: Option<u16>,
    pub resolve_to: Option<IpAddr>,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            scheme: "https",
            port: None,
            resolve_to: None,
        }
    }
}

impl Endpoints {
    /// From the operator's `--alibaba-endpoint-url` (`http(s)://<ip>:<port>`).
    pub fn from_override(url: &str) -> Result<Self, String> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            ("http", rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            ("https", rest)
        } else {
            return Err(format!(
                "{url}: an Alibaba endpoint override is http://<ip>:<port> or https://<ip>:<port>"
            ));
        };
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                Some(port.parse::<u16>().map_err(|_| format!("{url}: bad port"))?),
            ),
            None => (authority, None),
        };
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(|_| {
                format!(
                    "{url}: the override names an IP address, which every Alibaba Cloud host then resolves to"
                )
            })?;
        Ok(Self {
            scheme,
            port,
            resolve_to: Some(ip),
        })
    }

    /// The base URL of `host` (`https://ram.aliyuncs.com`, or `http://ram.aliyuncs.com:5001`).
    pub fn base_url(&self, host: &str) -> String {
        match self.port {
            Some(port) => format!("{}://{host}:{port}", self.scheme),
            None => format!("{}://{host}", self.scheme),
        }
    }

    /// The `Host` header (and signed host) for `host`.
    pub fn authority(&self, host: &str) -> String {
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }
}

/// Resolves every name to one address: the endpoint override's.
#[derive(Clone, Debug)]
pub struct FixedResolver(pub IpAddr);

impl ResolveDns for FixedResolver {
    fn resolve_dns<'a>(&'a self, _name: &'a str) -> DnsFuture<'a> {
        DnsFuture::ready(Ok(vec![self.0]))
    }
}

/// An HTTPS connector on the operator's TLS stack, resolving names as `endpoints` says.
pub fn connector(endpoints: &Endpoints) -> Connector {
    let builder =
        Connector::builder().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc));
    match endpoints.resolve_to {
        Some(ip) => builder.build_with_resolver(FixedResolver(ip)),
        None => builder.build(),
    }
}

/// An Alibaba Cloud API refused a request, or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service answered with an error: its HTTP status, code and message.
    #[error("{service} {action}: {code} (HTTP {status}): {message}")]
    Refused {
        service: &'static str,
        action: String,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer (connection, TLS, timeout) or one that is not the API's JSON.
    #[error("{service} {action}: {detail}")]
    Transport {
        service: &'static str,
        action: String,
        detail: String,
    },
}

impl ApiError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            Self::Transport { .. } => None,
        }
    }

    /// RAM and STS refuse an unauthorized call with `NoPermission` (RAM), `Forbidden.*` or
    /// `NoPermission.*` codes, HTTP 403.
    pub fn is_access_denied(&self) -> bool {
        matches!(self, Self::Refused { status: 403, .. })
            || self
                .code()
                .is_some_and(|c| c.starts_with("NoPermission") || c.starts_with("Forbidden"))
    }

    /// `EntityNotExist.Role`, `EntityNotExist.Policy`, `EntityNotExist.OIDCProvider`, ...
    pub fn is_not_found(&self) -> bool {
        self.code().is_some_and(|c| c.starts_with("EntityNotExist"))
            || matches!(self, Self::Refused { status: 404, .. })
    }

    pub fn is_already_exists(&self) -> bool {
        self.code().is_some_and(|c| c.starts_with("EntityAlreadyExists"))
    }

    /// Worth retrying: throttling, the service's own failures, and no answer at all.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Refused { status, code, .. } => {
                *status >= 500 || code.starts_with("Throttling") || code == "ServiceUnavailable"
            }
        }
    }
}

/// One Alibaba Cloud API (product) the operator calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub version: &'static str,
}

pub const RAM: Service = Service {
    name: "ram",
    version: "2015-05-01",
};
pub const STS: Service = Service {
    name: "sts",
    version: "2015-04-01",
};
pub const CS: Service = Service {
    name: "cs",
    version: "2015-12-15",
};

/// A client for RAM, STS and ACK.
pub struct OpenApi {
    endpoints: Endpoints,
    connector: Connector,
    pub(crate) calls: super::Calls,
}

impl std::fmt::Debug for OpenApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenApi")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// The time as signature V3 wants it, e.g. `2026-12-05T12:00:00Z`.
fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn nonce() -> String {
    let mut bytes = [0u8; 16];
    // The nonce only has to be unique; if the OS generator failed, the time is unique enough.
    if getrandom::fill(&mut bytes).is_err() {
        return jiff::Timestamp::now().as_nanosecond().to_string();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl OpenApi {
    pub fn new(endpoints: Endpoints) -> Self {
        let connector = connector(&endpoints);
        Self {
            endpoints,
            connector,
            calls: super::Calls::default(),
        }
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// An RPC-style call (RAM, STS): `POST /` with the parameters in the query string.
    /// `key: None` sends it unsigned (STS AssumeRoleWithOIDC, whose token is the credential).
    pub async fn rpc(
        &self,
        service: Service,
        host: &str,
        action: &str,
        params: &BTreeMap<String, String>,
        key: Option<&AccessKey>,
    ) -> Result<Value, ApiError> {
        self.send(service, host, "POST", "/", action, params, key).await
    }

    /// A ROA-style call (ACK): `method` on a resource path, no body.
    pub async fn roa(
        &self,
        service: Service,
        host: &str,
        method: &str,
        path: &str,
        action: &str,
        key: &AccessKey,
    ) -> Result<Value, ApiError> {
        self.send(service, host, method, path, action, &BTreeMap::new(), Some(key))
            .await
    }

    /// One call, counted (`bucketwire_alibaba_calls_total`) once it has an answer or failed.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        service: Service,
        host: &str,
        method: &str,
        path: &str,
        action: &str,
        params: &BTreeMap<String, String>,
        key: Option<&AccessKey>,
    ) -> Result<Value, ApiError> {
        let answer = self
            .send_uncounted(service, host, method, path, action, params, key)
            .await;
        // The validation's AssumeRoleWithOIDC is the workload's own call (its token is the
        // credential); everything else is the operator's.
        let identity = if params.get("RoleSessionName").map(String::as_str) == Some(super::WORKLOAD_SESSION) {
            "workload"
        } else {
            "operator"
        };
        self.calls.record(identity, service.name, action, answer.is_ok());
        answer
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_uncounted(
        &self,
        service: Service,
        host: &str,
        method: &str,
        path: &str,
        action: &str,
        params: &BTreeMap<String, String>,
        key: Option<&AccessKey>,
    ) -> Result<Value, ApiError> {
        let transport = |detail: String| ApiError::Transport {
            service: service.name,
            action: action.to_string(),
            detail,
        };
        let authority = self.endpoints.authority(host);
        let query = signer::canonical_query(params);
        let url = if query.is_empty() {
            format!("{}{path}", self.endpoints.base_url(host))
        } else {
            format!("{}{path}?{query}", self.endpoints.base_url(host))
        };
        let headers = match key {
            Some(key) => signer::sign(
                &signer::Request {
                    method,
                    host: &authority,
                    path,
                    query: params,
                    action,
                    version: service.version,
                    content_type: None,
                    body: b"",
                },
                key,
                &now(),
                &nonce(),
            ),
            None => vec![
                ("host".to_string(), authority.clone()),
                ("x-acs-action".to_string(), action.to_string()),
                ("x-acs-version".to_string(), service.version.to_string()),
                ("x-acs-date".to_string(), now()),
                ("x-acs-signature-nonce".to_string(), nonce()),
            ],
        };
        let mut request = http::Request::builder().method(method).uri(&url);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .header("accept", "application/json")
            .body(SdkBody::empty())
            .map_err(|e| transport(format!("building the request: {e}")))?;
        let request =
            HttpRequest::try_from(request).map_err(|e| transport(format!("building the request: {e}")))?;
        let response = self
            .connector
            .call(request)
            .await
            .map_err(|e| transport(format!("no answer: {e}")))?;
        let status = response.status().as_u16();
        let body = ByteStream::new(response.into_body())
            .collect()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?
            .into_bytes();
        let value: Value = serde_json::from_slice(&body).map_err(|_| {
            transport(format!(
                "HTTP {status}, an answer that is not JSON: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        Err(ApiError::Refused {
            service: service.name,
            action: action.to_string(),
            status,
            code: value["Code"].as_str().unwrap_or("Unknown").to_string(),
            message: value["Message"].as_str().unwrap_or_default().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_keeps_the_hosts_and_changes_where_they_resolve() {
        let e = Endpoints::from_override("http://127.0.0.1:5001/").expect("override");
        assert_eq!(e.resolve_to, Some("127.0.0.1".parse().expect("ip")));
        assert_eq!(e.base_url("ram.aliyuncs.com"), "http://ram.aliyuncs.com:5001");
        assert_eq!(e.authority("ram.aliyuncs.com"), "ram.aliyuncs.com:5001");
        let real = Endpoints::default();
        assert_eq!(real.base_url("sts.aliyuncs.com"), "https://sts.aliyuncs.com");
        assert_eq!(real.authority("sts.aliyuncs.com"), "sts.aliyuncs.com");
    }

    #[test]
    fn an_override_must_be_an_ip_address_with_a_scheme() {
        for bad in [
            "127.0.0.1:5001",
            "ftp://127.0.0.1",
            "http://localhost:5001",
            "http://127.0.0.1:x",
        ] {
            assert!(Endpoints::from_override(bad).is_err(), "{bad}");
        }
        assert!(Endpoints::from_override("https://[::1]:443").is_ok());
    }

    #[test]
    fn refusals_are_classified_by_code_and_status() {
        let refused = |status, code: &str| ApiError::Refused {
            service: "ram",
            action: "GetRole".into(),
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(refused(404, "EntityNotExist.Role").is_not_found());
        assert!(refused(403, "NoPermission").is_access_denied());
        assert!(refused(409, "EntityAlreadyExists.Role").is_already_exists());
        assert!(refused(400, "Throttling.User").is_transient());
        assert!(refused(503, "ServiceUnavailable").is_transient());
        assert!(!refused(400, "InvalidParameter").is_transient());
        assert!(!refused(400, "InvalidParameter").is_access_denied());
    }
}
