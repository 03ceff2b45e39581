//! `bucketwire run`: the controller loop, the finalizer, and the metrics and health servers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::api::{BucketIntegration, FIELD_MANAGER, FINALIZER};
use crate::aws::Aws;
use crate::error::Error;
use crate::metrics::{KubernetesRequestLabels, Metrics, ReconcileLabels};
use crate::reconcile::{self, Context};
use crate::settings::Settings;

/// How long to wait before retrying an error that needs someone to change something.
const TERMINAL_RETRY: Duration = Duration::from_secs(300);
/// The first retry of a transient error (throttling, 5xx, a lost connection, a conflict).
const TRANSIENT_RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest wait between retries of a transient error.
const TRANSIENT_RETRY_MAX: Duration = Duration::from_secs(300);

/// Pure: the wait before the next retry after `failures` consecutive transient failures:
/// doubling from 2 s up to 5 min, with `jitter` (0.0..1.0) spreading it by up to 20% so that
/// integrations that failed together do not retry together.
pub fn transient_retry_delay(failures: u32, jitter: f64) -> Duration {
    let doubled = TRANSIENT_RETRY_FIRST.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled
        .min(TRANSIENT_RETRY_MAX)
        .mul_f64(1.0 - 0.2 * jitter.clamp(0.0, 1.0))
}

pub async fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let metrics = Metrics::new();
    metrics
        .aws_rate_limit
        .get_or_create(&crate::metrics::AwsServiceLabels {
            service: "iam".into(),
        })
        .set(i64::from(settings.iam_requests_per_second.get()));
    let client = counted_client(metrics.clone()).await?;
    let aws = Aws::load(
        settings.aws_endpoint_url.clone(),
        settings.iam_requests_per_second,
        metrics.clone(),
    )
    .await;
    let reporter = Reporter {
        controller: "bucketwire".into(),
        instance: None,
    };

    let (integrations, config_maps): (
        Api<PartialObjectMeta<BucketIntegration>>,
        Api<PartialObjectMeta<ConfigMap>>,
    ) = match &settings.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // Fail fast with a clear message when the CRD is missing.
    integrations.list(&kube::api::ListParams::default().limit(1)).await.map_err(|e| {
        format!("cannot list BucketIntegrations ({e}); is the CRD installed? `bucketwire crd | kubectl apply -f -`")
    })?;

    let ready = Arc::new(AtomicBool::new(false));
    let servers = serve_http(
        settings.metrics_addr,
        settings.health_addr,
        metrics.clone(),
        ready.clone(),
    )
    .await?;

    let concurrency = settings.max_concurrent_reconciles;
    ready.store(true, Ordering::Relaxed);

    // Leadership: only the holder of the Lease reconciles. Losing it ends the process (a
    // restarted replica starts over as a candidate); SIGTERM releases it for a fast handover.
    let leadership = if settings.leader_elect {
        let identity = format!(
            "{}-{}",
            std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "bucketwire".into()),
            std::process::id()
        );
        let lease_namespace = settings.lease_namespace();
        let manager = LeaseManagerBuilder::new(client.clone(), settings.leader_election_lease.clone())
            .with_namespace(lease_namespace.clone())
            .with_identity(identity.clone())
            .with_duration(LEASE_SECONDS)
            .with_grace(LEASE_GRACE_SECONDS)
            .build()
            .await?;
        let (mut leader, task) = manager.watch().await;
        info!(%identity, lease = %settings.leader_election_lease, namespace = %lease_namespace, "waiting for leadership");
        let acquired = tokio::select! {
            acquired = leader.wait_for(|is_leader| *is_leader) => { acquired.map(|_| true)? }
            _ = shutdown_signal() => false,
        };
        if !acquired {
            drop(leader);
            let _ = task.await;
            return Ok(());
        }
        info!(%identity, "became the leader");
        Some((leader, task))
    } else {
        None
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<&'static str>();
    let mut leader_rx = leadership.as_ref().map(|(rx, _)| rx.clone());
    tokio::spawn(async move {
        let lost = async {
            match leader_rx.as_mut() {
                Some(rx) => {
                    let _ = rx.wait_for(|is_leader| !*is_leader).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let reason = tokio::select! {
            _ = shutdown_signal() => "signal",
            _ = lost => "lost leadership",
        };
        let _ = stop_tx.send(reason);
    });
    let (reason_tx, reason_rx) = tokio::sync::watch::channel("");
    let shutdown = async move {
        let reason = stop_rx.await.unwrap_or("signal");
        let _ = reason_tx.send(reason);
        info!(reason, "shutting down: finishing reconciles in flight");
    };

    let page_size = settings.list_page_size;
    let ctx = Arc::new(Context::new(client, aws, settings, metrics, reporter));
    info!("bucketwire controller starting");
    // Status writes must not trigger reconciles: only spec (generation), annotations (on-demand
    // validation) and finalizers (deletion) do. The periodic resync covers everything else.
    // The cache holds each integration's metadata only, without managedFields: that is all the
    // triggers read, and it is what the operator keeps per integration while idle (a full
    // object, with its status' conditions, is several times larger; at 10,000 integrations the
    // difference is most of the memory budget). Each reconcile reads its integration afresh.
    let (reader, writer) = reflector::store();
    let triggers = watcher(integrations, watcher::Config::default().page_size(page_size))
        .default_backoff()
        .modify(trim_cached_metadata)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let values_changes = values_config_maps(config_maps, page_size)
        .default_backoff()
        .try_filter_map(|event| async move {
            // Our own writes are no news (and re-reconciling after each would double the AWS
            // reads of a create); someone else's edit or a deletion is drift to repair.
            Ok(match event {
                watcher::Event::Delete(cm) => Some(cm),
                watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)
                    if !written_last_by(&cm.metadata, FIELD_MANAGER) =>
                {
                    Some(cm)
                }
                _ => None,
            })
        });
    Controller::for_stream(triggers, reader)
        .owns_stream(values_changes)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                warn!(%err, "reconcile failed");
            }
        })
        .await;
    info!("bucketwire controller stopped");
    servers.abort();
    if let Some((leader, task)) = leadership {
        // Closing the channel makes the manager release the Lease.
        drop(leader);
        let _ = task.await;
        info!("released the leadership Lease");
    }
    if *reason_rx.borrow() == "lost leadership" {
        return Err("lost the leadership Lease; exiting so that a restart starts over as a candidate".into());
    }
    Ok(())
}

/// The annotation `kubectl apply` keeps the last applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the integrations' cache leaves out of each one's metadata: its managedFields, and the
/// copy of the whole applied object that `kubectl apply` (and Argo CD's default sync) keep in
/// an annotation, about as large as the rest of the metadata together. That copy changes only
/// with the spec, which bumps the generation, so no trigger needs it; the reconcile reads the
/// integration afresh.
fn trim_cached_metadata(bi: &mut PartialObjectMeta<BucketIntegration>) {
    bi.managed_fields_mut().clear();
    bi.annotations_mut().remove(LAST_APPLIED);
}

/// The values ConfigMaps the operator wrote (by label), as metadata only: an owned ConfigMap
/// only maps back to its integration (owner reference) and says who wrote it last
/// (managedFields), so its data never needs to cross the wire. An `Api<PartialObjectMeta<_>>`
/// makes kube ask the apiserver for PartialObjectMetadata on list and watch alike (kube 5's
/// replacement for the deprecated `metadata_watcher`).
fn values_config_maps(
    api: Api<PartialObjectMeta<ConfigMap>>,
    page_size: u32,
) -> impl futures::Stream<Item = Result<watcher::Event<PartialObjectMeta<ConfigMap>>, watcher::Error>> {
    watcher(
        api,
        watcher::Config::default()
            .labels("app.kubernetes.io/managed-by=bucketwire")
            .page_size(page_size),
    )
}

/// Whether `manager` made the latest write to an object, by its managedFields (ties, within
/// their one-second resolution, count as someone else's).
fn written_last_by(meta: &ObjectMeta, manager: &str) -> bool {
    let entries = meta.managed_fields.as_deref().unwrap_or_default();
    let Some(latest) = entries.iter().filter_map(|e| e.time.as_ref()).max() else {
        return false;
    };
    entries
        .iter()
        .filter(|e| e.time.as_ref() == Some(latest))
        .all(|e| e.manager.as_deref() == Some(manager))
}

/// A client for the in-cluster (or kubeconfig) API server that counts its requests by verb.
async fn counted_client(metrics: Arc<Metrics>) -> Result<Client, kube::Error> {
    let config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    let count = tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        let watch = request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let verb = if watch {
            "WATCH".to_string()
        } else {
            request.method().as_str().to_string()
        };
        metrics
            .kubernetes_requests
            .get_or_create(&KubernetesRequestLabels { verb })
            .inc();
        request
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}

/// Lease validity; a leader that stops renewing is replaced within this many seconds.
const LEASE_SECONDS: u64 = 10;
/// Renew this long before expiry (also the tolerated clock skew between nodes).
const LEASE_GRACE_SECONDS: u64 = 2;

/// SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Reads the integration the cache's metadata names, as it is now, then reconciles it.
async fn reconcile(
    meta: Arc<PartialObjectMeta<BucketIntegration>>,
    ctx: Arc<Context>,
) -> Result<Action, kube::runtime::finalizer::Error<Error>> {
    let api: Api<BucketIntegration> =
        Api::namespaced(ctx.client.clone(), &meta.namespace().unwrap_or_default());
    match api.get_opt(&meta.name_any()).await {
        Ok(Some(bi)) => reconcile_integration(Arc::new(bi), ctx).await,
        // Deleted since the event (its finalizer was already gone): nothing is left to do.
        Ok(None) => Ok(Action::await_change()),
        Err(err) => Err(kube::runtime::finalizer::Error::ApplyFailed(Error::kube(
            "read the integration",
        )(err))),
    }
}

async fn reconcile_integration(
    bi: Arc<BucketIntegration>,
    ctx: Arc<Context>,
) -> Result<Action, kube::runtime::finalizer::Error<Error>> {
    if let Some(delay) = first_check_delay(&bi, &ctx) {
        // Its status stands until then: the gauge counts it meanwhile.
        let conditions = bi.status.as_ref().map(|s| {
            s.conditions
                .iter()
                .map(|c| (c.type_.clone(), c.status.clone()))
                .collect()
        });
        ctx.metrics.set_conditions(&object_key(bi.as_ref()), conditions);
        info!(name = %bi.name_any(), namespace = ?bi.namespace(), first_check_in = ?delay,
            "steady integration: first check at its phase of the restart spread");
        return Ok(Action::requeue(delay));
    }
    let started = Instant::now();
    let ns = bi.namespace().unwrap_or_default();
    let api: Api<BucketIntegration> = Api::namespaced(ctx.client.clone(), &ns);
    let bi_key = bi.clone();
    let result = finalizer(&api, FINALIZER, bi, |event| async {
        match event {
            FinalizerEvent::Apply(bi) => match reconcile::apply(&bi, &ctx).await {
                Ok(retry) => Ok(Action::requeue(retry.unwrap_or(ctx.settings.resync_interval))),
                Err(err) => Err(err),
            },
            FinalizerEvent::Cleanup(bi) => reconcile::cleanup(&bi, &ctx)
                .await
                .map(|()| Action::await_change()),
        }
    })
    .await;
    if result.is_ok() {
        ctx.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&object_key(bi_key.as_ref()));
    }
    let label = match &result {
        Ok(_) => "success".to_string(),
        Err(
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e),
        ) => e.reason().to_string(),
        Err(_) => "FinalizerError".to_string(),
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels { result: label })
        .inc();
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

fn error_policy(
    bi: Arc<PartialObjectMeta<BucketIntegration>>,
    err: &kube::runtime::finalizer::Error<Error>,
    ctx: Arc<Context>,
) -> Action {
    let terminal = match err {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e.is_terminal(),
        _ => false,
    };
    let key = object_key(bi.as_ref());
    let failures = {
        let mut all = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = all.entry(key).or_default();
        *n = n.saturating_add(1);
        *n
    };
    // Terminal errors wait for someone to fix something outside (create the bucket, the OIDC
    // provider, ...): look again at the resync interval. Transient ones back off exponentially.
    let delay = if terminal {
        ctx.settings.resync_interval.min(TERMINAL_RETRY)
    } else {
        transient_retry_delay(failures, jitter())
    };
    warn!(name = %bi.name_any(), namespace = ?bi.namespace(), %err, terminal, failures, retry_in = ?delay, "reconcile error");
    ctx.metrics.retry_delay.observe(delay.as_secs_f64());
    Action::requeue(delay)
}

/// How long a steady integration (Ready for its generation, not being deleted) that this
/// process sees for the first time waits before its first check: its phase of the restart
/// spread. Changed specs, not-Ready integrations and deletions go at once (`None`).
fn first_check_delay(bi: &BucketIntegration, ctx: &Context) -> Option<Duration> {
    let uid = bi.uid()?;
    let first = ctx
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(crate::cadence::uid_key(&uid));
    if !first || bi.metadata.deletion_timestamp.is_some() || !reconcile::steady(bi) {
        return None;
    }
    let delay = crate::cadence::phase(&uid, ctx.settings.restart_spread());
    (!delay.is_zero()).then_some(delay)
}

fn object_key(bi: &impl ResourceExt) -> String {
    format!("{}/{}", bi.namespace().unwrap_or_default(), bi.name_any())
}

/// A number in 0.0..1.0, different on every call (spreads retries; not for secrets).
fn jitter() -> f64 {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u16::from_le_bytes(bytes)) / 65536.0
}

/// Starts the metrics server (`/metrics`) and the health server (`/healthz`, `/readyz`).
async fn serve_http(
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> Result<tokio::task::JoinHandle<()>, std::io::Error> {
    let metrics_listener = TcpListener::bind(metrics_addr).await?;
    let health_listener = TcpListener::bind(health_addr).await?;
    info!(metrics = %metrics_listener.local_addr()?, health = %health_listener.local_addr()?, "serving");
    Ok(tokio::spawn(async move {
        let metrics_server = serve(metrics_listener, move |path| match path {
            "/metrics" => (200, metrics.encode()),
            _ => (404, "not found\n".into()),
        });
        let health_server = serve(health_listener, move |path| match path {
            "/healthz" => (200, "ok\n".into()),
            "/readyz" if ready.load(Ordering::Relaxed) => (200, "ok\n".into()),
            "/readyz" => (503, "starting\n".into()),
            _ => (404, "not found\n".into()),
        });
        tokio::join!(metrics_server, health_server);
    }))
}

async fn serve<F>(listener: TcpListener, handler: F)
where
    F: Fn(&str) -> (u16, String) + Clone + Send + Sync + 'static,
{
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                error!(%err, "accept failed");
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (status, body) = handler(req.uri().path());
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
                async move { Ok::<_, Infallible>(response) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                warn!(%err, "http connection error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    fn entry(manager: &str, second: i64) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            time: Some(Time(jiff::Timestamp::from_second(second).unwrap())),
            ..Default::default()
        }
    }

    fn meta(entries: Vec<ManagedFieldsEntry>) -> ObjectMeta {
        ObjectMeta {
            managed_fields: Some(entries),
            ..Default::default()
        }
    }

    /// The values ConfigMaps are listed and watched as metadata only: both requests ask the
    /// apiserver for PartialObjectMetadata, so ConfigMap data is never transferred.
    #[tokio::test]
    async fn values_config_maps_are_listed_and_watched_as_metadata_only() {
        use std::sync::Mutex;
        type Seen = Arc<Mutex<Vec<(http::Uri, String)>>>;
        let seen: Seen = Arc::default();
        let arrived = Arc::new(tokio::sync::Notify::new());
        let (record, notify) = (seen.clone(), arrived.clone());
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let watch = request.uri().query().is_some_and(|q| q.contains("watch=true"));
            let accept = request
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let mut all = record.lock().unwrap_or_else(|e| e.into_inner());
            if all.len() < 8 {
                all.push((request.uri().clone(), accept));
            }
            notify.notify_one();
            async move {
                if watch {
                    // The watch stays open with nothing to say (as an idle apiserver's does).
                    std::future::pending::<()>().await;
                }
                let list = r#"{"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadataList","metadata":{"resourceVersion":"1"},"items":[]}"#;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(list.as_bytes()))))
            }
        });
        let client = Client::new(service, "default");
        let drive = async {
            let mut events = std::pin::pin!(values_config_maps(Api::namespaced(client, "milvus"), 100));
            while events.next().await.is_some() {}
        };
        let list_and_watch = async {
            while seen.lock().unwrap_or_else(|e| e.into_inner()).len() < 2 {
                arrived.notified().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            tokio::select! {
                () = drive => {}
                () = list_and_watch => {}
            }
        })
        .await
        .expect("a list then a watch within 10 s");
        let requests = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert!(requests.len() >= 2, "a list and a watch: {requests:?}");
        for (uri, accept) in &requests[..2] {
            assert!(
                accept.contains("as=PartialObjectMetadata"),
                "{uri} asks for whole ConfigMaps (Accept {accept:?})"
            );
            assert!(uri.path().ends_with("/namespaces/milvus/configmaps"), "{uri}");
            let query = uri.query().unwrap_or_default();
            assert!(
                query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dbucketwire"),
                "{query}"
            );
        }
        assert!(requests[0].0.query().unwrap_or_default().contains("limit=100"));
        assert!(requests[1].0.query().unwrap_or_default().contains("watch=true"));
    }

    #[test]
    fn the_cache_keeps_the_triggers_annotations_but_not_kubectls_copy_of_the_object() {
        let mut bi = PartialObjectMeta::<BucketIntegration> {
            metadata: ObjectMeta {
                annotations: Some(
                    [
                        (LAST_APPLIED, "{\"spec\":{}}"),
                        (crate::api::VALIDATE_ANNOTATION, "now"),
                    ]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into(),
                ),
                managed_fields: Some(vec![entry("kubectl", 1)]),
                generation: Some(3),
                ..Default::default()
            },
            types: None,
            _phantom: std::marker::PhantomData,
        };
        trim_cached_metadata(&mut bi);
        assert_eq!(bi.managed_fields(), &[]);
        assert_eq!(
            bi.annotations().keys().collect::<Vec<_>>(),
            [crate::api::VALIDATE_ANNOTATION],
            "the on-demand validation annotation (a trigger) stays"
        );
        assert_eq!(bi.metadata.generation, Some(3));
    }

    #[test]
    fn transient_retries_back_off_to_a_bound() {
        let secs = |n| transient_retry_delay(n, 0.0).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [2, 4, 8, 16]);
        assert_eq!(secs(9), 300, "capped at 5 minutes");
        assert_eq!(secs(u32::MAX), 300, "no overflow");
        let jittered = transient_retry_delay(3, 0.999);
        assert!(jittered < Duration::from_secs(8) && jittered > Duration::from_millis(6390));
    }

    #[test]
    fn only_our_own_latest_write_is_ignored() {
        assert!(written_last_by(
            &meta(vec![entry("bucketwire", 10)]),
            "bucketwire"
        ));
        assert!(written_last_by(
            &meta(vec![entry("kubectl-edit", 5), entry("bucketwire", 10)]),
            "bucketwire"
        ));
        assert!(!written_last_by(
            &meta(vec![entry("bucketwire", 5), entry("kubectl-edit", 10)]),
            "bucketwire"
        ));
        assert!(
            !written_last_by(
                &meta(vec![entry("bucketwire", 10), entry("kubectl-edit", 10)]),
                "bucketwire"
            ),
            "a tie may hide an edit"
        );
        assert!(!written_last_by(&meta(vec![]), "bucketwire"), "unknown: look");
    }
}
