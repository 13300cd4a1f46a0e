//! Prometheus metrics: the counters the daemon keeps and the HTTP endpoint that serves them.
//!
//! [`Metrics`] owns a prometheus-client registry and offers one typed method per event, so
//! callers never spell a metric or label name. [`serve`] exposes it as OpenMetrics text on
//! `GET /metrics` (plus `GET /healthz`) at `metrics_listen`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::task::JoinHandle;

/// Content type of `GET /metrics`: OpenMetrics text, as prometheus-client encodes it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the build-duration histogram: small RTX builds take well under a
/// second, large Enterprise builds hours, so the buckets run from 0.1 s to 2 h.
const BUILD_SECONDS_BUCKETS: [f64; 16] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
    7200.0,
];

/// A job state counted by the `trtfarm_jobs` gauge (finished jobs are counted by outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GaugedJobState {
    /// Waiting for a build slot.
    Queued,
    /// A worker is building it.
    Running,
}

/// How a job or a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Produced its engines (from a build or from the cache).
    Succeeded,
    /// Failed: invalid input, TensorRT error, worker crash or timeout.
    Failed,
    /// Cancelled by a client or by shutdown.
    Cancelled,
}

impl GaugedJobState {
    /// Every state, in label order.
    pub const ALL: [GaugedJobState; 2] = [GaugedJobState::Queued, GaugedJobState::Running];

    /// The label value: `queued` or `running`.
    pub fn as_str(self) -> &'static str {
        match self {
            GaugedJobState::Queued => "queued",
            GaugedJobState::Running => "running",
        }
    }
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 3] = [Outcome::Succeeded, Outcome::Failed, Outcome::Cancelled];

    /// The label value: `succeeded`, `failed` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

impl EncodeLabelValue for GaugedJobState {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Labels `{state="queued|running"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: GaugedJobState,
}

/// Labels `{outcome="succeeded|failed|cancelled"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

/// The daemon's metrics. Cheap to update from any thread; share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    jobs: Family<StateLabels, Gauge>,
    jobs_finished: Family<OutcomeLabels, Counter>,
    cache_hits: Counter,
    cache_misses: Counter,
    builds_started: Counter,
    build_seconds: Family<OutcomeLabels, Histogram>,
    blob_bytes_received: Counter,
    blob_bytes_sent: Counter,
    singleflight_joins: Counter,
    store_write_retries: Counter,
    models_converted: Counter,
    models_reused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric at zero (queued and running gauges included, so dashboards see
    /// them before the first job).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("trtfarm");
        let jobs = Family::<StateLabels, Gauge>::default();
        let jobs_finished = Family::<OutcomeLabels, Counter>::default();
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let builds_started = Counter::default();
        let build_seconds = Family::<OutcomeLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BUILD_SECONDS_BUCKETS)) as fn() -> Histogram,
        );
        let blob_bytes_received = Counter::default();
        let blob_bytes_sent = Counter::default();
        let singleflight_joins = Counter::default();
        let store_write_retries = Counter::default();
        let models_converted = Counter::default();
        let models_reused = Counter::default();

        // Every series exists from the start, at zero, so rates and alerts work before the
        // first event of each kind.
        for state in GaugedJobState::ALL {
            jobs.get_or_create(&StateLabels { state }).set(0);
        }
        for outcome in Outcome::ALL {
            let _ = jobs_finished.get_or_create(&OutcomeLabels { outcome });
            let _ = build_seconds.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register("jobs", "Jobs in the queue or building now", jobs.clone());
        registry.register(
            "jobs_finished",
            "Jobs that reached a final state, by outcome",
            jobs_finished.clone(),
        );
        registry.register(
            "cache_hits",
            "Build requests answered from the action cache",
            cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Build requests the action cache could not answer",
            cache_misses.clone(),
        );
        registry.register(
            "builds_started",
            "Build workers started",
            builds_started.clone(),
        );
        registry.register_with_unit(
            "build",
            "Wall time of a build worker, from start to exit, by outcome",
            Unit::Seconds,
            build_seconds.clone(),
        );
        registry.register(
            "blob_bytes_received",
            "Blob bytes uploaded by clients",
            blob_bytes_received.clone(),
        );
        registry.register(
            "blob_bytes_sent",
            "Blob bytes downloaded by clients",
            blob_bytes_sent.clone(),
        );
        registry.register(
            "singleflight_joins",
            "Build requests that joined a build already running for the same action key",
            singleflight_joins.clone(),
        );
        registry.register(
            "store_write_retries",
            "Store writes of finished builds tried again after a transient store error",
            store_write_retries.clone(),
        );
        registry.register(
            "models_converted",
            "Model conversions (fp16/bf16 autocast) the prepare step ran",
            models_converted.clone(),
        );
        registry.register(
            "models_reused",
            "Builds that took a model another build had already converted, from the store",
            models_reused.clone(),
        );
        Metrics {
            registry,
            jobs,
            jobs_finished,
            cache_hits,
            cache_misses,
            builds_started,
            build_seconds,
            blob_bytes_received,
            blob_bytes_sent,
            singleflight_joins,
            store_write_retries,
            models_converted,
            models_reused,
        }
    }

    /// Sets `trtfarm_jobs{state="queued"}`: jobs waiting for a slot now.
    pub fn set_jobs_queued(&self, count: u64) {
        self.set_jobs(GaugedJobState::Queued, count);
    }

    /// Sets `trtfarm_jobs{state="running"}`: jobs a worker is building now.
    pub fn set_jobs_running(&self, count: u64) {
        self.set_jobs(GaugedJobState::Running, count);
    }

    /// Counts a job reaching its final state (`trtfarm_jobs_finished_total`). Call once per job,
    /// whether it was built, answered from the cache or cancelled while queued.
    pub fn job_finished(&self, outcome: Outcome) {
        self.jobs_finished
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts an action-cache hit (`trtfarm_cache_hits_total`).
    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    /// Counts an action-cache miss (`trtfarm_cache_misses_total`).
    pub fn cache_miss(&self) {
        self.cache_misses.inc();
    }

    /// Counts a build worker starting (`trtfarm_builds_started_total`).
    pub fn build_started(&self) {
        self.builds_started.inc();
    }

    /// Records a build worker's wall time by outcome (`trtfarm_build_seconds`). Call once per
    /// [`Metrics::build_started`].
    pub fn build_finished(&self, outcome: Outcome, elapsed: Duration) {
        self.build_seconds
            .get_or_create(&OutcomeLabels { outcome })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a model conversion the prepare step ran (`trtfarm_models_converted_total`).
    pub fn model_converted(&self) {
        self.models_converted.inc();
    }

    /// Counts a build that reused a converted model (`trtfarm_models_reused_total`).
    pub fn model_reused(&self) {
        self.models_reused.inc();
    }

    /// Counts a store write of a finished build tried again (`trtfarm_store_write_retries_total`).
    pub fn store_write_retried(&self) {
        self.store_write_retries.inc();
    }

    /// Counts blob bytes a client uploaded (`trtfarm_blob_bytes_received_total`).
    pub fn blob_bytes_received(&self, bytes: u64) {
        self.blob_bytes_received.inc_by(bytes);
    }

    /// Counts blob bytes sent to a client (`trtfarm_blob_bytes_sent_total`).
    pub fn blob_bytes_sent(&self, bytes: u64) {
        self.blob_bytes_sent.inc_by(bytes);
    }

    /// Counts a request that joined a build already in flight for its action key
    /// (`trtfarm_singleflight_joins_total`).
    pub fn singleflight_joined(&self) {
        self.singleflight_joins.inc();
    }

    /// Every metric as OpenMetrics text, ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, and our label values always encode.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        text
    }

    /// Sets one state of the `trtfarm_jobs` gauge.
    fn set_jobs(&self, state: GaugedJobState, count: u64) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.jobs.get_or_create(&StateLabels { state }).set(count);
    }
}

/// Serves `GET /metrics` (OpenMetrics text) and `GET /healthz` (`ok`) on `addr` until
/// `shutdown` completes.
///
/// The socket is bound before this returns, so `addr` may use port 0: the bound address is
/// returned with the server task, whose result is the server's.
pub async fn serve(
    metrics: Arc<Metrics>,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let router = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .with_state(metrics);
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown);
    let task = tokio::spawn(async move { server.await });
    Ok((bound, task))
}

/// `GET /metrics`.
async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        metrics.encode(),
    )
}

/// `GET /healthz`: the process is up and serving HTTP.
async fn healthz_handler() -> &'static str {
    "ok\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The line of `text` for `series` (name with labels), parsed as a number.
    fn value_of(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
            rest.split(' ').next()?.parse().ok()
        })
    }

    #[test]
    fn every_metric_is_exported_at_zero() {
        let text = Metrics::new().encode();
        for series in [
            "trtfarm_jobs{state=\"queued\"}",
            "trtfarm_jobs{state=\"running\"}",
            "trtfarm_cache_hits_total",
            "trtfarm_cache_misses_total",
            "trtfarm_builds_started_total",
            "trtfarm_blob_bytes_received_total",
            "trtfarm_blob_bytes_sent_total",
            "trtfarm_singleflight_joins_total",
            "trtfarm_store_write_retries_total",
            "trtfarm_models_converted_total",
            "trtfarm_models_reused_total",
            "trtfarm_jobs_finished_total{outcome=\"succeeded\"}",
            "trtfarm_jobs_finished_total{outcome=\"failed\"}",
            "trtfarm_jobs_finished_total{outcome=\"cancelled\"}",
            "trtfarm_build_seconds_count{outcome=\"succeeded\"}",
            "trtfarm_build_seconds_count{outcome=\"failed\"}",
            "trtfarm_build_seconds_count{outcome=\"cancelled\"}",
        ] {
            assert_eq!(value_of(&text, series), Some(0.0), "{series} in:\n{text}");
        }
        for family in [
            "# TYPE trtfarm_jobs gauge",
            "# TYPE trtfarm_jobs_finished counter",
            "# TYPE trtfarm_build_seconds histogram",
            "# UNIT trtfarm_build_seconds seconds",
        ] {
            assert!(text.contains(family), "{family} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn calls_show_up_with_their_values() {
        let metrics = Metrics::new();
        metrics.set_jobs_queued(7);
        metrics.set_jobs_running(2);
        metrics.set_jobs_running(3);
        metrics.job_finished(Outcome::Succeeded);
        metrics.job_finished(Outcome::Succeeded);
        metrics.job_finished(Outcome::Cancelled);
        metrics.cache_hit();
        metrics.cache_hit();
        metrics.cache_hit();
        metrics.cache_miss();
        metrics.build_started();
        metrics.build_finished(Outcome::Failed, Duration::from_millis(1500));
        metrics.blob_bytes_received(1 << 30);
        metrics.blob_bytes_received(5);
        metrics.blob_bytes_sent(42);
        metrics.singleflight_joined();
        metrics.store_write_retried();
        metrics.store_write_retried();
        metrics.model_converted();
        metrics.model_reused();
        metrics.model_reused();
        let text = metrics.encode();

        let expected = [
            ("trtfarm_jobs{state=\"queued\"}", 7.0),
            ("trtfarm_jobs{state=\"running\"}", 3.0),
            ("trtfarm_jobs_finished_total{outcome=\"succeeded\"}", 2.0),
            ("trtfarm_jobs_finished_total{outcome=\"cancelled\"}", 1.0),
            ("trtfarm_cache_hits_total", 3.0),
            ("trtfarm_cache_misses_total", 1.0),
            ("trtfarm_builds_started_total", 1.0),
            ("trtfarm_build_seconds_count{outcome=\"failed\"}", 1.0),
            ("trtfarm_build_seconds_sum{outcome=\"failed\"}", 1.5),
            (
                "trtfarm_build_seconds_bucket{le=\"1.0\",outcome=\"failed\"}",
                0.0,
            ),
            (
                "trtfarm_build_seconds_bucket{le=\"2.5\",outcome=\"failed\"}",
                1.0,
            ),
            (
                "trtfarm_build_seconds_bucket{le=\"7200.0\",outcome=\"failed\"}",
                1.0,
            ),
            (
                "trtfarm_blob_bytes_received_total",
                (1u64 << 30) as f64 + 5.0,
            ),
            ("trtfarm_blob_bytes_sent_total", 42.0),
            ("trtfarm_singleflight_joins_total", 1.0),
            ("trtfarm_store_write_retries_total", 2.0),
            ("trtfarm_models_converted_total", 1.0),
            ("trtfarm_models_reused_total", 2.0),
        ];
        for (series, value) in expected {
            assert_eq!(value_of(&text, series), Some(value), "{series} in:\n{text}");
        }
        for untouched in [
            "trtfarm_jobs_finished_total{outcome=\"failed\"}",
            "trtfarm_build_seconds_count{outcome=\"succeeded\"}",
        ] {
            assert_eq!(
                value_of(&text, untouched),
                Some(0.0),
                "{untouched} in:\n{text}"
            );
        }
    }

    /// Sends one HTTP/1.1 GET and returns the whole response (head and body).
    async fn http_get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_metrics_and_health_over_http() {
        let metrics = Arc::new(Metrics::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let (bound, server) = serve(metrics.clone(), addr, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        assert_ne!(bound.port(), 0, "the bound port is returned");

        metrics.cache_hit();
        metrics.blob_bytes_sent(1234);
        let response = http_get(bound, "/metrics").await;
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-type: {OPENMETRICS_CONTENT_TYPE}")),
            "{head}"
        );
        assert_eq!(
            value_of(body, "trtfarm_cache_hits_total"),
            Some(1.0),
            "{body}"
        );
        assert_eq!(
            value_of(body, "trtfarm_blob_bytes_sent_total"),
            Some(1234.0),
            "{body}"
        );

        let health = http_get(bound, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        let missing = http_get(bound, "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
