//! Operator settings: flags, each with an environment variable (the Helm chart sets those).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct Settings {
    /// Name of the EKS cluster the operator runs in: tags every AWS resource and, unless an
    /// integration or --oidc-issuer says otherwise, is where the OIDC issuer is looked up.
    #[arg(long, env = "BUCKETWIRE_CLUSTER_NAME")]
    pub cluster_name: String,

    /// OIDC issuer URL to trust instead of the EKS cluster's (self-managed clusters).
    #[arg(long, env = "BUCKETWIRE_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// IAM path of the roles and policies the operator creates.
    #[arg(long, env = "BUCKETWIRE_ROLE_PATH", default_value = "/bucketwire/", value_parser = parse_iam_path)]
    pub role_path: String,

    /// Permissions boundary attached to every role the operator creates.
    #[arg(long, env = "BUCKETWIRE_PERMISSIONS_BOUNDARY")]
    pub permissions_boundary: Option<String>,

    /// When set, bucket names (derived or given) must start with this prefix, and derived names use it.
    #[arg(long, env = "BUCKETWIRE_BUCKET_PREFIX")]
    pub bucket_prefix: Option<String>,

    /// Existing buckets that `bucket.create: false` may adopt although they carry no
    /// bucketwire tags: exact names, or prefixes ending in `*` (comma-separated).
    #[arg(long, env = "BUCKETWIRE_ADOPT_BUCKETS", value_delimiter = ',')]
    pub adopt_buckets: Vec<String>,

    /// KMS keys that SSE-KMS integrations may name (comma-separated): key ARNs, alias ARNs, or
    /// `alias/<name>` (looked up in each integration's region, in the operator's account).
    /// Empty: SSE-KMS is refused (KmsKeyNotAllowed). An adopted bucket's own key needs no entry.
    #[arg(long, env = "BUCKETWIRE_ALLOWED_KMS_KEYS", value_delimiter = ',', value_parser = parse_kms_entry)]
    pub allowed_kms_keys: Vec<String>,

    /// Accounts that `mode: CrossAccount` integrations may trust (comma-separated): 12-digit
    /// AWS account IDs, 16-digit Alibaba Cloud account IDs. Empty: CrossAccount is refused. The
    /// operator's own account is refused whatever this says (TrustNotAllowed).
    #[arg(long, env = "BUCKETWIRE_ALLOWED_TRUSTED_ACCOUNTS", value_delimiter = ',', value_parser = parse_account_id)]
    pub allowed_trusted_accounts: Vec<String>,

    /// OIDC issuers that an integration's `identity.oidcIssuer` may name besides --oidc-issuer
    /// (https URLs, comma-separated). Empty: only --oidc-issuer.
    #[arg(long, env = "BUCKETWIRE_ALLOWED_OIDC_ISSUERS", value_delimiter = ',', value_parser = parse_issuer)]
    pub allowed_oidc_issuers: Vec<String>,

    /// EKS clusters that an integration's `identity.eksClusterName` may name besides
    /// --cluster-name (comma-separated). Empty: only --cluster-name.
    #[arg(long, env = "BUCKETWIRE_ALLOWED_EKS_CLUSTERS", value_delimiter = ',', value_parser = parse_cluster_name)]
    pub allowed_eks_clusters: Vec<String>,

    /// The ACK cluster the operator runs in (Alibaba Cloud, `identity.mode: RRSA`): its RRSA
    /// OIDC provider is what roles trust unless an integration names another
    /// (`alibaba.ackClusterId`).
    #[arg(long, env = "BUCKETWIRE_ACK_CLUSTER_ID", value_parser = parse_ack_cluster_id)]
    pub ack_cluster_id: Option<String>,

    /// ACK clusters that an integration's `alibaba.ackClusterId` may name besides
    /// --ack-cluster-id (comma-separated). Empty: only --ack-cluster-id.
    #[arg(long, env = "BUCKETWIRE_ALLOWED_ACK_CLUSTERS", value_delimiter = ',', value_parser = parse_ack_cluster_id)]
    pub allowed_ack_clusters: Vec<String>,

    /// Where Alibaba Cloud's hosts are reached instead of their own addresses (emulators, the
    /// test bed): `http(s)://<ip>:<port>`. Requests keep the real host names (RAM, STS, ACK,
    /// OSS virtual hosts), which resolve to this address.
    #[arg(long, env = "BUCKETWIRE_ALIBABA_ENDPOINT_URL", value_parser = parse_alibaba_endpoint)]
    pub alibaba_endpoint_url: Option<String>,

    /// How often every integration is re-checked for drift, e.g. `1h`, `5m`, `30s`.
    #[arg(long, env = "BUCKETWIRE_RESYNC_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub resync_interval: Duration,

    /// How often a steady resync reads all of a bucket's settings (tags, ownership controls,
    /// encryption, policy, versioning), each integration at its own phase of the interval; the
    /// resyncs between read only the public access block (an adopted bucket: its encryption).
    /// At most the resync interval (`0s`): every resync reads them all.
    #[arg(long, env = "BUCKETWIRE_BUCKET_SETTINGS_INTERVAL", default_value = "6h", value_parser = parse_duration)]
    pub bucket_settings_interval: Duration,

    /// How often a steady resync runs the full validation probe (writes and deletes a probe
    /// object as the workload) rather than the read-only check (assume the role, HeadBucket,
    /// GetObject of an absent key). Unset: never; the probe then runs only on a create, a spec
    /// change, a repair, a failure, or the `bucketwire.io/validate` annotation.
    #[arg(long, env = "BUCKETWIRE_WRITE_PROBE_INTERVAL", value_parser = parse_duration)]
    pub write_probe_interval: Option<Duration>,

    /// After a start (a restart, a new leader), how far apart the first checks of steady
    /// integrations (Ready for their generation) are spread, each at its own phase; the others
    /// are reconciled at once. Unset: the resync interval. `0s`: no spread.
    #[arg(long, env = "BUCKETWIRE_RESTART_SPREAD", value_parser = parse_duration)]
    pub restart_spread: Option<Duration>,

    /// How long a failed validation may be IAM propagating a change (reported as Propagating and
    /// retried with backoff) before its precise reason is reported.
    #[arg(long, env = "BUCKETWIRE_PROPAGATION_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub propagation_timeout: Duration,

    /// Integrations reconciled at the same time (at least 1).
    #[arg(long, env = "BUCKETWIRE_MAX_CONCURRENT_RECONCILES", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,

    /// Client-side limit on IAM requests per second (retries included), so that thousands of
    /// integrations at once never cause a throttling storm in the account.
    #[arg(long, env = "BUCKETWIRE_IAM_REQUESTS_PER_SECOND", default_value = "10")]
    pub iam_requests_per_second: NonZeroU32,

    /// Steady resyncs read IAM in bulk (GetAccountAuthorizationDetails, a page per 250
    /// roles and policies) and per resource only where that view shows drift. Needs
    /// `iam:GetAccountAuthorizationDetails` on `*` (the published policy's `ReadIamInBulk`);
    /// off, or refused, each role and policy is read on every resync.
    #[arg(long, env = "BUCKETWIRE_IAM_BULK_READS", default_value_t = true, action = clap::ArgAction::Set)]
    pub iam_bulk_reads: bool,

    /// Objects per page when the operator lists BucketIntegrations and ConfigMaps (smaller pages
    /// keep the peak memory of a (re)start low; at least 1).
    #[arg(long, env = "BUCKETWIRE_LIST_PAGE_SIZE", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub list_page_size: u32,

    /// Endpoint for every AWS service (emulators, S3-compatible stores); S3 is then path-style.
    #[arg(long, env = "BUCKETWIRE_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "BUCKETWIRE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Address of the /healthz and /readyz endpoints.
    #[arg(long, env = "BUCKETWIRE_HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,

    /// Namespace to watch; all namespaces when absent.
    #[arg(long, env = "BUCKETWIRE_NAMESPACE")]
    pub namespace: Option<String>,

    /// Elect one active replica through a coordination.k8s.io Lease; the others wait.
    #[arg(long, env = "BUCKETWIRE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Namespace of the leader-election Lease. Default: the operator's own namespace, from
    /// POD_NAMESPACE (the chart sets it from the Pod's metadata), else from the in-cluster
    /// ServiceAccount's namespace file; `default` only outside a cluster.
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(long, env = "BUCKETWIRE_LEADER_ELECTION_LEASE", default_value = "bucketwire")]
    pub leader_election_lease: String,

    /// Log format.
    #[arg(long, env = "BUCKETWIRE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where a Pod's ServiceAccount token volume says which namespace the Pod runs in.
pub const IN_CLUSTER_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl Settings {
    /// The window over which steady integrations' first checks are spread after a start.
    pub fn restart_spread(&self) -> Duration {
        self.restart_spread.unwrap_or(self.resync_interval)
    }

    /// The namespace of the leader-election Lease: `--leader-election-namespace` or
    /// POD_NAMESPACE, else the in-cluster namespace file, else `default` (outside a cluster).
    pub fn lease_namespace(&self) -> String {
        lease_namespace(
            self.leader_election_namespace.as_deref(),
            std::path::Path::new(IN_CLUSTER_NAMESPACE_FILE),
        )
    }

    /// The non-empty entries of an allow-list.
    pub fn allowed(list: &[String]) -> impl Iterator<Item = &str> {
        list.iter().map(String::as_str).filter(|e| !e.is_empty())
    }

    /// Whether an existing, untagged bucket may be adopted.
    pub fn may_adopt(&self, bucket: &str) -> bool {
        self.adopt_buckets
            .iter()
            .any(|entry| match entry.strip_suffix('*') {
                Some(prefix) => !prefix.is_empty() && bucket.starts_with(prefix),
                None => entry == bucket,
            })
    }
}

/// The Lease namespace: `given` (flag or POD_NAMESPACE) when non-empty, else the content of
/// `in_cluster_file` (the Pod's own namespace), else `default`.
fn lease_namespace(given: Option<&str>, in_cluster_file: &std::path::Path) -> String {
    given
        .map(str::trim)
        .filter(|ns| !ns.is_empty())
        .map(str::to_string)
        .or_else(|| {
            std::fs::read_to_string(in_cluster_file)
                .ok()
                .map(|text| text.trim().to_string())
                .filter(|ns| !ns.is_empty())
        })
        .unwrap_or_else(|| "default".to_string())
}

/// `1h`, `30m`, `45s`, `500ms`, or a combination such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {text:?}: use for example 1h, 5m, 30s or 500ms");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let value: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value * 60),
            "h" => Duration::from_secs(value * 3600),
            _ => return Err(err()),
        };
        total += unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

// Each allow-list entry may also be empty (an empty environment variable, which is how the chart
// renders an empty list): empty entries allow nothing (`Settings::allowed`).

/// An `--allowed-kms-keys` entry: `arn:<partition>:kms:<region>:<account>:key/<id>`,
/// `arn:<partition>:kms:<region>:<account>:alias/<name>`, or `alias/<name>`.
fn parse_kms_entry(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(String::new());
    }
    let err = || {
        format!(
            "invalid KMS key {text:?}: use a key ARN (arn:aws:kms:<region>:<account>:key/<id>), an alias ARN (arn:aws:kms:<region>:<account>:alias/<name>) or alias/<name>"
        )
    };
    let alias_name_ok = |name: &str| {
        !name.is_empty()
            && name.len() <= 250
            && !name.starts_with("aws/")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c))
    };
    if let Some(name) = text.strip_prefix("alias/") {
        return if alias_name_ok(name) {
            Ok(text.to_string())
        } else {
            Err(err())
        };
    }
    // Alibaba Cloud KMS keys are allowed by their ARN only: acs:kms:<region>:<account>:key/<id>.
    if let ["acs", "kms", region, account, resource] = text.splitn(5, ':').collect::<Vec<_>>().as_slice() {
        let ok = crate::provider::alibaba::naming::is_region(region)
            && account.len() == 16
            && account.chars().all(|c| c.is_ascii_digit())
            && resource.strip_prefix("key/").is_some_and(|id| {
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        return if ok { Ok(text.to_string()) } else { Err(err()) };
    }
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    let [arn, partition, "kms", region, account, resource] = parts.as_slice() else {
        return Err(err());
    };
    let ok = *arn == "arn"
        && crate::naming::Partition::of_arn(text).is_some_and(|p| p.id() == *partition)
        && !region.is_empty()
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && match resource.split_once('/') {
            Some(("key", id)) => !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            Some(("alias", name)) => alias_name_ok(name),
            _ => false,
        };
    if ok { Ok(text.to_string()) } else { Err(err()) }
}

/// An `--allowed-trusted-accounts` entry: a 12-digit AWS account ID or a 16-digit Alibaba
/// Cloud account ID.
fn parse_account_id(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() || matches!(text.len(), 12 | 16) && text.chars().all(|c| c.is_ascii_digit()) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "invalid account ID {text:?}: 12 digits (AWS) or 16 digits (Alibaba Cloud)"
        ))
    }
}

/// `--alibaba-endpoint-url`: `http(s)://<ip>:<port>` (checked where it is used).
fn parse_alibaba_endpoint(text: &str) -> Result<String, String> {
    crate::provider::alibaba::openapi::Endpoints::from_override(text.trim()).map(|_| text.trim().to_string())
}

/// An ACK cluster id: lowercase letters and digits.
fn parse_ack_cluster_id(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.len() <= 64 && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "invalid ACK cluster id {text:?}: lowercase letters and digits"
        ))
    }
}

/// An `--allowed-oidc-issuers` entry: an https URL (compared without the scheme and trailing
/// `/`, as IAM names providers).
fn parse_issuer(text: &str) -> Result<String, String> {
    let text = text.trim();
    let rest = text.strip_prefix("https://").unwrap_or_default();
    if text.is_empty() || !rest.is_empty() && !rest.starts_with('/') && !rest.contains(['?', '#', ' ']) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "invalid OIDC issuer {text:?}: an https:// URL without query or fragment"
        ))
    }
}

/// An `--allowed-eks-clusters` entry: an EKS cluster name.
fn parse_cluster_name(text: &str) -> Result<String, String> {
    let text = text.trim();
    let ok = text.is_empty()
        || (1..=100).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!("invalid EKS cluster name {text:?}"))
    }
}

fn parse_iam_path(text: &str) -> Result<String, String> {
    let ok = text.starts_with('/')
        && text.ends_with('/')
        && text.len() <= 512
        && text.chars().all(|c| ('\u{21}'..='\u{7e}').contains(&c));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "invalid IAM path {text:?}: it must start and end with '/'"
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_usual_units() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
    }

    #[test]
    fn adoption_allow_list_takes_names_and_prefixes() {
        let mut s = crate::settings::tests::settings();
        s.adopt_buckets = vec!["legacy-milvus".into(), "team-a-*".into(), "*".into()];
        assert!(s.may_adopt("legacy-milvus"));
        assert!(s.may_adopt("team-a-vectors"));
        assert!(!s.may_adopt("legacy-milvus-2"));
        assert!(!s.may_adopt("team-b-vectors"), "a bare * allows nothing");
    }

    #[test]
    fn allow_list_entries_are_checked_at_startup() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        let key = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let parsed = Cli::try_parse_from([
            "bucketwire",
            "--cluster-name",
            "c",
            "--allowed-kms-keys",
            &format!("{key},alias/milvus-data,arn:aws-cn:kms:cn-north-1:111122223333:alias/m"),
            "--allowed-trusted-accounts",
            "999988887777,111122223333",
            "--allowed-oidc-issuers",
            "https://oidc.example.com/id/1",
            "--allowed-eks-clusters",
            "prod-a,prod_b",
        ])
        .map_err(|e| e.to_string())
        .expect("valid entries parse")
        .settings;
        assert_eq!(parsed.allowed_kms_keys.len(), 3);
        assert_eq!(parsed.allowed_trusted_accounts, ["999988887777", "111122223333"]);
        assert_eq!(parsed.allowed_eks_clusters, ["prod-a", "prod_b"]);
        for (flag, bad) in [
            ("--allowed-kms-keys", "1234abcd-12ab-34cd-56ef-1234567890ab"),
            ("--allowed-kms-keys", "arn:aws:kms:us-east-2:111122223333:key/*"),
            ("--allowed-kms-keys", "alias/aws/s3"),
            ("--allowed-kms-keys", "arn:aws:s3:::bucket"),
            ("--allowed-trusted-accounts", "12345"),
            ("--allowed-trusted-accounts", "*"),
            ("--allowed-oidc-issuers", "http://oidc.example.com"),
            ("--allowed-eks-clusters", "*"),
        ] {
            assert!(
                Cli::try_parse_from(["bucketwire", "--cluster-name", "c", flag, bad]).is_err(),
                "{flag} {bad} must be refused"
            );
        }
        let empty = Cli::try_parse_from([
            "bucketwire",
            "--cluster-name",
            "c",
            "--allowed-trusted-accounts",
            "",
        ])
        .map_err(|e| e.to_string())
        .expect("an empty list parses")
        .settings;
        assert_eq!(Settings::allowed(&empty.allowed_trusted_accounts).count(), 0);
        let defaults = settings();
        assert!(defaults.allowed_kms_keys.is_empty() && defaults.allowed_trusted_accounts.is_empty());
        assert!(defaults.allowed_oidc_issuers.is_empty() && defaults.allowed_eks_clusters.is_empty());
    }

    #[test]
    fn the_lease_defaults_to_the_operators_own_namespace() {
        let dir = std::env::temp_dir().join(format!("bucketwire-lease-ns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("namespace");
        // In a Pod: POD_NAMESPACE (or the flag) first, else the ServiceAccount's namespace file.
        std::fs::write(&file, "bucketwire-system\n").expect("namespace file");
        assert_eq!(lease_namespace(Some("ops"), &file), "ops");
        assert_eq!(lease_namespace(None, &file), "bucketwire-system");
        assert_eq!(lease_namespace(Some(""), &file), "bucketwire-system");
        // Outside a cluster (no namespace file): `default`.
        let absent = dir.join("absent");
        assert_eq!(lease_namespace(None, &absent), "default");
        std::fs::write(&file, "").expect("empty file");
        assert_eq!(lease_namespace(None, &file), "default");
        let _ = std::fs::remove_dir_all(&dir);
        // Nothing is decided at parse time: no flag and no POD_NAMESPACE leave it to the above.
        if std::env::var_os("POD_NAMESPACE").is_none() {
            assert_eq!(settings().leader_election_namespace, None);
        }
    }

    #[test]
    fn zero_concurrency_and_zero_page_size_are_refused() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        let parse = |flag: &str, value: &str| {
            Cli::try_parse_from(["bucketwire", "--cluster-name", "c", flag, value]).map(|c| c.settings)
        };
        for flag in ["--max-concurrent-reconciles", "--list-page-size"] {
            let err = parse(flag, "0")
                .err()
                .unwrap_or_else(|| panic!("{flag} 0 must be refused"));
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{flag}");
            assert_eq!(err.exit_code(), 2, "a usage error");
        }
        let one = parse("--max-concurrent-reconciles", "1")
            .map_err(|e| e.to_string())
            .expect("1 parses");
        assert_eq!(one.max_concurrent_reconciles, 1);
        assert_eq!(settings().max_concurrent_reconciles, 4);
        assert_eq!(settings().list_page_size, 100);
    }

    pub(crate) fn settings() -> Settings {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        Cli::parse_from(["bucketwire", "--cluster-name", "test"]).settings
    }
}
