//! `gatewatch run`: the service. Kafka in; alerts to stdout (JSON lines) and the
//! alerts topic; `/metrics`, `/healthz`, `/readyz` on `[admin] listen`.
//!
//! Shutdown is a parameter: when the `shutdown` future completes, the source
//! stops fetching, finishes the message in hand, flushes dead letters, stores
//! and commits what was handed off, and leaves the group, within
//! `[kafka] shutdown_grace`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::Registry;

use crate::actions::config::AdminLimits;
use crate::actions::{AlertHandoff, HandoffError, JsonLinesHandoff};
use crate::config::{ConfigError, ConfigErrors, DetectorFile, GatewatchConfig, DEV_FINGERPRINT_KEY};
use crate::engine::PipelineFactory;
use crate::event::Alert;
use crate::source::kafka::config::admin_listen;
use crate::source::kafka::output::OutputProducer;
use crate::source::kafka::repartition::{count_partitions, detect_workers, ingest_workers, Enabled, RepartitionTopic};
use crate::source::kafka::{base_client_config, Health, KafkaSettings, KafkaSource, NewPipeline, Stage};
use crate::telemetry::admin::AdminListenerMetrics;
use crate::telemetry::labels::Outcome;
use crate::telemetry::{render, Metrics};

/// Hands every alert to each output in turn; fails if any fails (the source then
/// retries all of them: outputs see an alert at least once, with the same id).
pub struct Fanout(pub Vec<Arc<dyn AlertHandoff>>);

impl AlertHandoff for Fanout {
    fn handoff(&self, alert: &Alert) -> Result<(), HandoffError> {
        for h in &self.0 {
            h.handoff(alert)?;
        }
        Ok(())
    }
}

/// Builds the per-partition pipeline factory, checking the detector files once, up front.
pub fn pipeline_factory(cfg: &GatewatchConfig, key: &[u8]) -> Result<NewPipeline, Vec<ConfigError>> {
    let source = crate::config::DetectorSource::for_config(cfg);
    let (files, errs) = crate::engine::load_files(cfg);
    let sigma = files.iter().filter(|f| f.kind == crate::sigma::KIND).count();
    tracing::info!("using {} and {sigma} Sigma rule(s) from {}", source.describe(), cfg.rules_dir().display());
    pipeline_factory_from(cfg, files, errs, key)
}

/// As [`pipeline_factory`], with detector files already read (the demo embeds its own).
pub fn pipeline_factory_from(
    cfg: &GatewatchConfig,
    files: Vec<DetectorFile>,
    errs: Vec<ConfigError>,
    key: &[u8],
) -> Result<NewPipeline, Vec<ConfigError>> {
    PipelineFactory::new(cfg, files, errs, key).map(Arc::new)
}

/// What the HTTP endpoints read: the registry, and the health of every stage this process runs.
#[derive(Clone)]
pub struct HttpState {
    pub registry: Arc<Registry>,
    pub health: Vec<Arc<Health>>,
}

impl HttpState {
    fn live(&self) -> bool {
        !self.health.is_empty() && self.health.iter().all(|h| h.live())
    }

    /// Ready when every stage is: its consumers all run, together they hold partitions, and
    /// each one holding partitions is within `ready_max_lag`. (A consumer of several in one
    /// process may hold none: a group with fewer partitions to give, or in mid-rebalance.)
    fn readiness(&self) -> Result<(), String> {
        for stage in Stage::ALL {
            let of_stage: Vec<&Arc<Health>> = self.health.iter().filter(|h| h.stage() == stage).collect();
            if of_stage.is_empty() {
                continue;
            }
            let holding: Vec<&&Arc<Health>> = of_stage.iter().filter(|h| h.assigned() > 0).collect();
            let ready = match of_stage.iter().find(|h| !h.live()) {
                Some(h) => h.readiness(),
                None if holding.is_empty() => of_stage[0].readiness(),
                None => holding.iter().map(|h| h.readiness()).find(Result::is_err).unwrap_or(Ok(())),
            };
            ready.map_err(|why| match stage {
                Stage::Single => why,
                stage => format!("{} stage: {why}", stage.as_str()),
            })?;
        }
        Ok(())
    }
}

/// `/metrics`, `/healthz`, `/readyz`: open to the scraper. A plain `Router` so
/// the admin API's router can be merged into it.
pub fn health_router(state: HttpState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics_handler(State(s): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render(&s.registry))
}

async fn healthz(State(s): State<HttpState>) -> impl IntoResponse {
    if s.live() {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "consumer is not running\n".to_string())
    }
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    match s.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

/// Which stages a service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAs {
    /// Normalize and detect in one consumer per input partition: for a one-partition input.
    Single,
    /// Ingest and detect, through the repartition topic, in this one process.
    Both,
    /// Only ingest (`--stage ingest`): input topics → repartition topic.
    Ingest,
    /// Only detect (`--stage detect`): repartition topic → alerts.
    Detect,
}

/// The parts a service runs with; `run` builds them from the config, tests and the demo build their own.
pub struct ServiceParts {
    pub settings: KafkaSettings,
    pub run_as: RunAs,
    pub listen: SocketAddr,
    pub new_pipeline: NewPipeline,
    pub handoff: Arc<dyn AlertHandoff>,
    pub registry: Arc<Registry>,
    /// The authenticated admin API (`/api/...`), served beside `/metrics`.
    pub admin: Option<axum::Router>,
    /// Timeouts and connection cap of the HTTP listener (`[admin]`).
    pub admin_limits: AdminLimits,
    /// The alert dispatcher, drained after the source stopped.
    pub dispatcher: Option<Arc<crate::actions::Dispatcher>>,
    /// Where the admin API asks the sources' rules about an entity; each source attaches.
    pub entities: Option<Arc<crate::admin::entities::Entities>>,
}

/// A running service: its Kafka sources (one per stage) and its HTTP endpoints.
pub struct Service {
    /// Where `/metrics`, `/healthz`, `/readyz` listen (the real port when `listen` said `:0`).
    pub addr: SocketAddr,
    pub metrics: Metrics,
    /// Ingest before detect: stopping in this order lets detect hand off what ingest sent last.
    sources: Vec<KafkaSource>,
    topic_stop: Arc<AtomicBool>,
    http_stop: tokio::sync::oneshot::Sender<()>,
    http: tokio::task::JoinHandle<()>,
    grace: Duration,
    dispatcher: Option<Arc<crate::actions::Dispatcher>>,
    /// Reloads the detector files on SIGHUP.
    reload: Option<tokio::task::JoinHandle<()>>,
}

/// The console's alert history (`[admin] history_size`, `history_file`).
pub fn open_history(
    admin: &crate::actions::config::AdminConfig,
) -> anyhow::Result<crate::admin::history::AlertHistory> {
    use crate::admin::history::AlertHistory;
    let clock: crate::admin::Clock = Arc::new(|| chrono::Utc::now().timestamp_millis());
    let Some(path) = &admin.history_file else { return Ok(AlertHistory::new(admin.history_size, clock)) };
    let (h, skipped) = AlertHistory::open(admin.history_size, clock, path)
        .with_context(|| format!("cannot open the alert history file {} ([admin] history_file)", path.display()))?;
    if skipped > 0 {
        tracing::warn!(file = %path.display(), skipped, "lines of the alert history file could not be read and were left out");
    }
    tracing::info!(file = %path.display(), alerts = h.len(), "alert history read back");
    Ok(h)
}

/// How many consumers of a stage this process runs: `[kafka] consumers` (default 1), never
/// more than the partitions they share when that count is known. Each is a member of the group
/// on a thread of its own, so the partitions, and the cores, are shared out by Kafka as between
/// instances; the state stays per partition.
fn consumers_for(settings: &KafkaSettings, partitions: Option<u32>) -> usize {
    let want = settings.consumers;
    match partitions {
        Some(p) => want.min(p as usize).max(1),
        None => want.max(1),
    }
}

/// Starts the sources of the stages `run_as` names, each stage with its consumers
/// ([`consumers_for`]; `input_partitions` counted at start, when the brokers answered).
fn start_sources(
    settings: KafkaSettings,
    run_as: RunAs,
    new_pipeline: NewPipeline,
    handoff: Arc<dyn AlertHandoff>,
    metrics: &Metrics,
    topic_stop: &Arc<AtomicBool>,
    input_partitions: Option<u32>,
) -> anyhow::Result<Vec<KafkaSource>> {
    let inputs = consumers_for(&settings, input_partitions);
    if run_as == RunAs::Single {
        let mut sources = Vec::new();
        for _ in 0..inputs {
            let s = KafkaSource::start(settings.clone(), new_pipeline.clone(), handoff.clone(), metrics.clone())
                .context("starting the Kafka consumer")?;
            sources.push(s);
        }
        tracing::info!(consumers = inputs, "consumers of the input in this process");
        return Ok(sources);
    }
    let mut sources = Vec::new();
    let topic = RepartitionTopic::ensure(&settings, topic_stop.clone());
    if matches!(run_as, RunAs::Both | RunAs::Ingest) {
        let mut base = base_client_config(&settings);
        for (k, v) in [("linger.ms", "5"), ("compression.type", "lz4"), ("enable.idempotence", "true")] {
            if !settings.librdkafka.contains_key(k) {
                base.set(k, v);
            }
        }
        let producer = OutputProducer::new(
            &base,
            &topic.name,
            "repartition producer",
            prometheus::IntCounter::new("repartition_queued", "queued").expect("a valid counter"),
            metrics.repartition_failures.clone(),
        )
        .context("creating the repartition producer")?;
        let mut s = settings.clone();
        // Ingest keeps no state worth rebuilding: it starts where it committed.
        s.rebuild_horizon_ms = 0;
        for _ in 0..inputs {
            let workers = ingest_workers(new_pipeline.clone(), &settings, topic.clone(), producer.clone());
            let src = KafkaSource::start_stage(
                s.clone(),
                Stage::Ingest,
                workers,
                vec![producer.clone()],
                handoff.clone(),
                metrics.clone(),
            )
            .context("starting the ingest stage")?;
            sources.push(src);
        }
    }
    if matches!(run_as, RunAs::Both | RunAs::Detect) {
        let mut s = settings.clone();
        s.topics = vec![topic.name.clone()];
        s.group_id = settings.repartition.detect_group_id(&settings.group_id);
        // The repartition topic is gatewatch's own: a new detect group reads all of it.
        s.start_from = crate::source::kafka::StartFrom::Earliest;
        s.dead_letter_topic = None;
        s.scrubbed_topic = None;
        let detects = consumers_for(&settings, Some(settings.repartition.partitions));
        for _ in 0..detects {
            let src = KafkaSource::start_stage(
                s.clone(),
                Stage::Detect,
                detect_workers(new_pipeline.clone()),
                Vec::new(),
                handoff.clone(),
                metrics.clone(),
            )
            .context("starting the detect stage")?;
            sources.push(src);
        }
        tracing::info!(ingest = inputs, detect = detects, "consumers per stage in this process");
    }
    Ok(sources)
}

impl Service {
    /// Binds the HTTP listener and starts consuming. Must run inside a Tokio runtime.
    pub async fn start(parts: ServiceParts) -> anyhow::Result<Service> {
        let metrics = Metrics::register(&parts.registry).context("registering metrics")?;
        metrics.init_kinds(&parts.new_pipeline.reader().scrubber().kinds());
        metrics.init_rules(parts.new_pipeline.rules().iter().map(|r| r.id.as_str()));
        metrics.set_rules_loaded(parts.new_pipeline.live().files().iter().map(|f| f.kind.as_str()));
        let listener_metrics =
            AdminListenerMetrics::register(&parts.registry).context("registering the admin listener metrics")?;
        let listener = tokio::net::TcpListener::bind(parts.listen)
            .await
            .with_context(|| format!("cannot listen on {} ([admin] listen)", parts.listen))?;
        let addr = listener.local_addr()?;
        let grace = parts.settings.shutdown_grace;
        let topic_stop = Arc::new(AtomicBool::new(false));
        let reload = reload_detectors(parts.new_pipeline.clone(), metrics.clone());
        // The input's partitions, when more than one consumer is wanted: no more are started.
        let input_partitions = if parts.run_as == RunAs::Detect || consumers_for(&parts.settings, None) == 1 {
            None
        } else {
            let base = base_client_config(&parts.settings);
            let topics = parts.settings.topics.clone();
            tokio::task::spawn_blocking(move || count_partitions(&base, &topics, Duration::from_secs(2)))
                .await
                .ok()
                .and_then(Result::ok)
        };
        let sources = start_sources(
            parts.settings,
            parts.run_as,
            parts.new_pipeline,
            parts.handoff,
            &metrics,
            &topic_stop,
            input_partitions,
        )?;
        if let Some(e) = &parts.entities {
            for s in &sources {
                e.attach(s.entity_source());
            }
        }
        let health = sources.iter().map(KafkaSource::health).collect();
        let mut router = health_router(HttpState { registry: parts.registry, health });
        if let Some(admin) = parts.admin {
            router = router.merge(admin);
        }
        let (http_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let http =
            tokio::spawn(crate::admin::serve(listener, router, parts.admin_limits, listener_metrics, async move {
                let _ = stop_rx.await;
            }));
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
        Ok(Service { addr, metrics, sources, topic_stop, http_stop, http, grace, dispatcher: parts.dispatcher, reload })
    }

    /// The health of the first stage (the only one, unless the service repartitions).
    pub fn health(&self) -> Arc<Health> {
        self.sources[0].health()
    }

    /// Resolves when a consumer thread ended on its own (a fatal error).
    pub async fn source_ended(&self) {
        let ended: Vec<_> = self.sources.iter().map(|s| Box::pin(s.ended())).collect();
        futures_select_any(ended).await
    }

    /// Graceful stop: final commits within the grace period, then the HTTP endpoints close.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Service { sources, topic_stop, http_stop, http, grace, dispatcher, reload, .. } = self;
        if let Some(r) = reload {
            r.abort();
        }
        topic_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let r = tokio::task::spawn_blocking(move || {
            let mut first_err = None;
            for s in sources {
                if let Err(e) = s.shutdown(grace) {
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        })
        .await;
        // The sources handed their last alerts off; let the sinks deliver them (or dead-letter them).
        if let Some(d) = dispatcher {
            d.shutdown(grace).await;
        }
        let _ = http_stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
        match r {
            Ok(r) => r.map_err(Into::into),
            Err(e) => Err(anyhow::anyhow!("shutdown task failed: {e}")),
        }
    }
}

/// Resolves when the first of `futs` does.
async fn futures_select_any<F: Future<Output = ()> + Unpin>(mut futs: Vec<F>) {
    std::future::poll_fn(|cx| {
        for f in futs.iter_mut() {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Runs a service until `shutdown` completes (or the consumer fails), then stops it gracefully.
pub async fn serve(parts: ServiceParts, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let service = Service::start(parts).await?;
    let failed = tokio::select! {
        _ = shutdown => false,
        _ = service.source_ended() => true,
    };
    let r = service.stop().await;
    if failed {
        anyhow::bail!("the Kafka consumer stopped unexpectedly (see the log above)");
    }
    r
}

/// `gatewatch run --stage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StageArg {
    Both,
    Ingest,
    Detect,
}

/// Which stages to run: `--stage`, `[kafka.repartition] enabled`, and (for `auto`) how many
/// partitions the input topics have.
async fn choose_stages(settings: &KafkaSettings, stage: StageArg) -> anyhow::Result<RunAs> {
    let topic = settings.repartition.topic(&settings.group_id);
    let detect_group = settings.repartition.detect_group_id(&settings.group_id);
    let (run_as, why) = match (stage, settings.repartition.enabled) {
        (StageArg::Ingest | StageArg::Detect, Enabled::Never) => anyhow::bail!(
            "--stage {} needs the repartition topic, and [kafka.repartition] enabled = \"never\"",
            if stage == StageArg::Ingest { "ingest" } else { "detect" }
        ),
        (StageArg::Ingest, _) => (RunAs::Ingest, "--stage ingest".to_string()),
        (StageArg::Detect, _) => (RunAs::Detect, "--stage detect".to_string()),
        (StageArg::Both, Enabled::Never) => return Ok(RunAs::Single),
        (StageArg::Both, Enabled::Always) => (RunAs::Both, "enabled = \"always\"".to_string()),
        (StageArg::Both, Enabled::Auto) => {
            let base = base_client_config(settings);
            let topics = settings.topics.clone();
            let counted = tokio::task::spawn_blocking(move || count_partitions(&base, &topics, Duration::from_secs(2)))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            match counted {
                Ok(1) => {
                    tracing::info!("the input has one partition: detecting in place, without the repartition topic");
                    return Ok(RunAs::Single);
                }
                Ok(n) => (RunAs::Both, format!("the input has {n} partitions")),
                Err(e) => {
                    (RunAs::Both, format!("the input partitions cannot be counted yet ({e}); right for any count"))
                }
            }
        }
    };
    tracing::info!(%topic, %detect_group, "repartitioning by the entity each detector counts: {why}");
    Ok(run_as)
}

/// `gatewatch run`: the service, built from the configuration.
pub async fn run(cfg: GatewatchConfig, stage: StageArg, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let key = match cfg.fingerprint_key() {
        Some(k) if k != DEV_FINGERPRINT_KEY => k,
        Some(_) => anyhow::bail!(
            "the published development fingerprint key cannot be used by `gatewatch run`: set GATEWATCH_FINGERPRINT_KEY or [fingerprint] key to a secret of your own"
        ),
        None => anyhow::bail!(
            "no fingerprint key: set GATEWATCH_FINGERPRINT_KEY or [fingerprint] key (at least 16 characters) before starting the service"
        ),
    };
    let mut errs = Vec::new();
    let settings = KafkaSettings::from_config(&cfg).map_err(|mut e| errs.append(&mut e)).ok();
    let listen = admin_listen(&cfg).map_err(|mut e| errs.append(&mut e)).ok();
    let new_pipeline = pipeline_factory(&cfg, key.as_bytes()).map_err(|mut e| errs.append(&mut e)).ok();
    let actions = crate::actions::ActionsSettings::from_config(&cfg).map_err(|mut e| errs.append(&mut e)).ok();
    let (Some(settings), Some(listen), Some(new_pipeline), Some(actions)) = (settings, listen, new_pipeline, actions)
    else {
        return Err(ConfigErrors(errs).into());
    };
    if settings.revocations_topic.is_some() && actions.revocation.is_none() {
        let file = cfg.path.clone().unwrap_or_else(|| "gatewatch.toml".into());
        return Err(ConfigErrors(vec![ConfigError::new(
            file,
            "kafka.revocations_topic",
            "set, but there is no [revocation] section to decide what is revoked",
        )])
        .into());
    }
    let mut outputs: Vec<Arc<dyn AlertHandoff>> = vec![Arc::new(JsonLinesHandoff::new(std::io::stdout()))];
    let now = chrono::Utc::now().timestamp_millis();
    let revoker = match &actions.revocation {
        Some(r) => {
            let mut extra: Vec<Arc<dyn crate::actions::revocation::targets::RevocationTarget>> = Vec::new();
            if let Some(topic) = &settings.revocations_topic {
                let t = crate::source::kafka::revocations::KafkaRevocationsTopic::new(
                    &base_client_config(&settings),
                    topic,
                    settings.alert_delivery_timeout,
                )
                .context("creating the revocations-topic producer")?;
                extra.push(Arc::new(t));
            }
            Some(Arc::new(
                crate::actions::revocation::Revoker::open_with(r, extra, now)
                    .map_err(|e| anyhow::anyhow!("revocation: {e}"))?,
            ))
        }
        None => None,
    };
    // Before the dispatcher: an alert is in the history before its first timeline entry.
    let history = Arc::new(open_history(&actions.admin)?);
    outputs.push(history.clone());
    let mut actions_config = actions.actions.clone();
    if let Some(topic) = &settings.alerts_topic {
        // The alerts topic is a sink like the others (delivered inside the handoff: the
        // brokers' acknowledgement is the durable store). Without `[actions]` the dispatcher
        // has it alone, and writes no file unless something must be dead-lettered.
        let a = actions_config.get_or_insert_with(|| {
            let base = cfg.path.as_deref().and_then(std::path::Path::parent).unwrap_or(std::path::Path::new(""));
            crate::actions::config::ActionsConfig::new(base.join("gatewatch-dead-letter.jsonl"))
        });
        a.sinks.push(alerts_topic_sink(&settings, topic));
    }
    let dispatcher = match &actions_config {
        Some(a) => {
            let d = Arc::new(
                crate::actions::Dispatcher::start_with_journal(a, Vec::new(), revoker.clone(), history.clone())
                    .map_err(|e| anyhow::anyhow!("actions: {e}"))?,
            );
            outputs.push(d.clone());
            Some(d)
        }
        None => None,
    };
    let registry = Arc::new(Registry::new());
    if let Some(d) = &dispatcher {
        let c = crate::telemetry::actions::ActionsCollector::new(d.clone(), revoker.clone())
            .context("creating the actions metrics")?;
        registry.register(Box::new(c)).context("registering the actions metrics")?;
    }
    let entities = Arc::new(crate::admin::entities::Entities::default());
    let mut admin_state = crate::admin::AdminState::new(actions.admin.token.clone(), revoker.clone())
        .with_rules(new_pipeline.clone())
        .with_history(history)
        .with_entities(entities.clone());
    if let Some(d) = &dispatcher {
        admin_state = admin_state.with_dispatcher(d.clone());
    }
    if let Some(r) = &revoker {
        let fa = crate::admin::forward_auth::ForwardAuth::new(r.deny_list(), key.as_bytes())
            .with_metrics(&registry)
            .context("registering the forward-auth metrics")?;
        admin_state = admin_state.with_forward_auth(Arc::new(fa));
    }
    if let (Some(r), false) = (&revoker, actions.admin.bouncers.is_empty()) {
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "gatewatch_crowdsec_requests_total",
                "Requests of CrowdSec bouncers to /v1/decisions, by result (forbidden: a wrong or missing X-Api-Key)",
            ),
            &["result"],
        )
        .context("creating the CrowdSec metrics")?;
        registry.register(Box::new(requests.clone())).context("registering the CrowdSec metrics")?;
        admin_state = admin_state.with_crowdsec(Arc::new(crate::admin::crowdsec::CrowdSec::new(
            r.deny_list(),
            actions.admin.bouncers.clone(),
            requests,
        )));
    }
    let admin = crate::admin::router(admin_state);
    // Polled from here on, so SIGTERM and SIGHUP are handled while the input is being counted.
    let mut shutdown = std::pin::pin!(shutdown);
    let run_as = tokio::select! {
        r = choose_stages(&settings, stage) => r?,
        _ = &mut shutdown => return Ok(()),
    };
    let parts = ServiceParts {
        settings,
        run_as,
        listen,
        new_pipeline,
        handoff: Arc::new(Fanout(outputs)),
        registry,
        admin: Some(admin),
        admin_limits: actions.admin.limits,
        dispatcher,
        entities: Some(entities),
    };
    serve(parts, shutdown).await
}

/// The sink `kafka:alerts` for `[kafka] alerts_topic`: every alert (whatever its `actions`),
/// acknowledged within `alert_delivery_timeout`, in `alerts_format`. Its breaker opens after 5
/// failed handoffs in a row and probes again after 5 s, the source's longest retry backoff.
fn alerts_topic_sink(settings: &KafkaSettings, topic: &str) -> crate::actions::config::SinkConfig {
    use crate::actions::config::{DeliveryConfig, KafkaSinkConfig, SinkConfig, SinkKind};
    SinkConfig {
        name: "kafka:alerts".into(),
        delivery: DeliveryConfig {
            min_severity: Some(crate::event::Severity::Info),
            timeout: settings.alert_delivery_timeout,
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(5),
            ..DeliveryConfig::default()
        },
        kind: SinkKind::Kafka(KafkaSinkConfig {
            topic: topic.to_string(),
            format: settings.alerts_format,
            client: base_client_config(settings),
        }),
    }
}

/// Reloads the detector files ([`PipelineFactory::reload`]) on every SIGHUP, and when the
/// files of the detector folder change (polled every second; a change is taken once two polls
/// agree, so a file still being written is not read half-way). All valid: the partitions take
/// the new set within about 100 ms, keeping the state of unchanged rules. Any error: the
/// running set is kept and the errors are logged. Counted in
/// `gatewatch_detector_reloads_total`. `gatewatch.toml` itself is read only at start.
fn reload_detectors(factory: NewPipeline, metrics: Metrics) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: detector files reload only when they change");
            None
        }
    };
    let mut dirs = match crate::config::DetectorSource::for_config(factory.config()) {
        crate::config::DetectorSource::Dir(d) => vec![d],
        crate::config::DetectorSource::BuiltIn { .. } => Vec::new(),
    };
    // The Sigma rules folder is watched even while absent: creating it adds its rules.
    dirs.push(factory.config().rules_dir());
    Some(tokio::spawn(async move {
        let stamp = |ds: &Vec<std::path::PathBuf>| {
            ds.iter()
                .map(|d| {
                    let mut v = Vec::new();
                    folder_stamp(d, &mut v);
                    v.sort();
                    v
                })
                .collect::<Vec<_>>()
        };
        let dir = dirs;
        let mut loaded = stamp(&dir);
        let mut last_poll = loaded.clone();
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            let why = tokio::select! {
                r = hangup => match r {
                    Some(()) => "SIGHUP",
                    None => return,
                },
                _ = poll.tick() => {
                    let now = stamp(&dir);
                    let settled = now == last_poll;
                    last_poll = now.clone();
                    if now == loaded || !settled {
                        continue;
                    }
                    "the detector or rules folder changed"
                }
            };
            loaded = stamp(&dir);
            last_poll = loaded.clone();
            reload_now(&factory, &metrics, why).await;
        }
    }))
}

/// Paths, sizes and modification times of the files in `dir` and its subfolders: what a
/// change to the folder changes.
type Stamp = (std::path::PathBuf, u64, Option<std::time::SystemTime>);

fn folder_stamp(dir: &std::path::Path, out: &mut Vec<Stamp>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            folder_stamp(&e.path(), out);
        } else if m.is_file() {
            out.push((e.path(), m.len(), m.modified().ok()));
        }
    }
}

async fn reload_now(factory: &NewPipeline, metrics: &Metrics, why: &str) {
    let f = factory.clone();
    let result = tokio::task::spawn_blocking(move || f.reload()).await;
    let source = format!(
        "{} and Sigma rules from {}",
        crate::config::DetectorSource::for_config(factory.config()).describe(),
        factory.config().rules_dir().display()
    );
    match result {
        Ok(Ok(report)) => {
            metrics.detector_reloads.with_label_values(&[Outcome::Ok.as_str()]).inc();
            metrics.detector_reload_ok.set(1);
            metrics.detector_loaded_at.set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
            metrics.init_rules(report.added.iter().chain(&report.reset).map(String::as_str));
            metrics.set_rules_loaded(factory.live().files().iter().map(|f| f.kind.as_str()));
            tracing::info!("{why}: reloaded {source}: {report} (gatewatch.toml is read only at start)");
        }
        Ok(Err(errs)) => {
            metrics.detector_reloads.with_label_values(&[Outcome::Error.as_str()]).inc();
            metrics.detector_reload_ok.set(0);
            tracing::error!("{why}: {source} not reloaded, the running set is kept:\n{}", ConfigErrors(errs));
        }
        Err(e) => {
            metrics.detector_reloads.with_label_values(&[Outcome::Error.as_str()]).inc();
            metrics.detector_reload_ok.set(0);
            tracing::error!(error = %e, "{why}: the reload task failed, the running set is kept");
        }
    }
}

/// Turns off SIGHUP's default action (exit) for the life of the process: registering a
/// listener does so in Tokio, even once the listener is dropped. Called first thing, so a
/// SIGHUP while the configuration is read does not kill either; a started service then
/// reloads on it.
pub fn survive_hangup(rt: &tokio::runtime::Runtime) {
    #[cfg(unix)]
    {
        let _in = rt.enter();
        if let Err(e) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            tracing::warn!(error = %e, "cannot catch SIGHUP: it will stop gatewatch");
        }
    }
    #[cfg(not(unix))]
    let _ = rt;
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
