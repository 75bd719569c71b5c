//! Telemetry for every oxcart process: log lines, and OpenTelemetry traces.
//!
//! One [`init`] per process installs a `tracing` subscriber with three layers:
//!
//! - **Logs** to stderr, filtered by `OXCART_LOG`/`RUST_LOG`, each line carrying the
//!   `trace_id` and `span_id` of the span it was logged in ([`LogFormat`]).
//! - **Traces**: oxcart's own spans (HTTP requests, event appends, consumers, the work of
//!   each handler) become OpenTelemetry spans. They are always given trace ids, so that
//!   logs correlate and the W3C trace context travels on through HTTP headers and events
//!   ([`context`]). They are exported over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, with the other standard `OTEL_*`
//!   variables (protocol, sampler, service name, resource attributes) honoured.
//! - **Database spans**: while exporting, every SQL statement sqlx runs becomes a client
//!   span under the span that ran it ([`sql`]).
//!
//! The trace layer has a filter of its own, so quieting the logs (`OXCART_LOG=warn`)
//! never thins out the traces, and the exporter's own HTTP and gRPC machinery is never
//! traced (it would trace its own exports).

pub mod context;
#[cfg(feature = "otlp")]
mod export;
mod log;
mod sql;

use std::sync::{Arc, OnceLock};

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Dispatch;
use tracing::dispatcher::WeakDispatch;
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::{LookupSpan, Scope};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, Registry};

pub use log::LogFormat;

/// The environment variables telemetry honours (read here, by the OpenTelemetry SDK or by
/// its OTLP exporter), for whatever checks that a deployment sets only variables that do
/// something.
pub const VARIABLES: &[&str] = &[
    "OXCART_LOG",
    "RUST_LOG",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
];

/// The default log filter; `OXCART_LOG` or `RUST_LOG` override it with the usual directives.
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Who is reporting: the resource every exported span carries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `service.name`, unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names one.
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
    /// `db.system.name` on database spans: `sqlite` or `postgresql`.
    pub database_system: Option<&'static str>,
    pub log_format: LogFormat,
}

/// What [`init`] installed. Call [`Telemetry::shutdown`] before the process exits, so
/// the spans still queued for export are sent.
#[must_use = "shut telemetry down before exiting, or queued spans are lost"]
pub struct Telemetry {
    provider: SdkTracerProvider,
    export: Option<String>,
    #[cfg(feature = "otlp")]
    probe: Option<export::Probe>,
}

impl Telemetry {
    /// Where spans go, for the start-up log line: `None` when nothing is exported.
    pub fn export(&self) -> Option<&str> {
        self.export.as_deref()
    }

    /// Reaches the collector once, as the exporter would: `Ok` when nothing is exported.
    /// The caller decides what a failure means (a refused certificate is a mistake; a
    /// collector that is not up yet is not).
    pub async fn probe(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        #[cfg(feature = "otlp")]
        if let Some(probe) = self.probe.clone() {
            return probe.run().await;
        }
        Ok(())
    }

    /// Sends what is queued and stops the exporter; waits at most the exporter's timeout.
    pub async fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if self.export.is_some() {
            return export::shutdown(self.provider).await;
        }
        // Nothing is queued: this returns at once.
        let _ = self.provider.shutdown();
    }
}

/// Logs only, no export: for the short-lived commands (`migrate`, `dlq list`, …).
pub fn init_logging(format: LogFormat) {
    let handle = SubscriberHandle::default();
    let _ = Registry::default()
        .with(handle.clone())
        .with(log_layer(format, handle))
        .try_init();
}

/// Installs the process's subscriber and, when the environment asks for it, the OTLP
/// exporter. A second call (tests starting several apps in one process) keeps the first
/// subscriber and exports nothing more.
pub fn init(settings: &Settings) -> anyhow::Result<Telemetry> {
    let exporter = exporter()?;
    let resource = resource(settings);
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    #[cfg(feature = "otlp")]
    let mut probe = None;
    let export = match exporter {
        Some((exporter, describe)) => {
            // The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
            #[cfg_attr(not(feature = "otlp"), allow(unused_variables))]
            let (installed, probed) = exporter.install(builder);
            builder = installed;
            #[cfg(feature = "otlp")]
            {
                probe = Some(probed);
            }
            Some(describe)
        }
        // Nothing leaves the process: no span is recorded of our own accord, but ids are
        // still minted for log correlation, and a caller's sampling decision is passed on.
        None => {
            builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
            None
        }
    };
    let provider = builder.build();
    let tracer = provider.tracer("oxcart");
    let traces = tracing_opentelemetry::layer()
        .with_tracer(tracer.clone())
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(own_spans());
    let handle = SubscriberHandle::default();
    let statements = export.is_some().then(|| {
        // The spans too: a layer sees only the spans its filter lets through, and the
        // statement's span is found among them.
        sql::StatementSpans::new(tracer, settings.database_system, handle.clone())
            .with_filter(own_spans().with_target(sql::TARGET, LevelFilter::DEBUG))
    });
    let _ = Registry::default()
        .with(handle.clone())
        .with(log_layer(settings.log_format, handle))
        .with(traces)
        .with(statements)
        .try_init();
    Ok(Telemetry {
        provider,
        export,
        #[cfg(feature = "otlp")]
        probe,
    })
}

/// oxcart's spans at `info` and above, whatever the log filter says.
fn own_spans() -> Targets {
    Targets::new().with_target("oxcart", LevelFilter::INFO)
}

fn log_layer<S>(format: LogFormat, handle: SubscriberHandle) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let filter = EnvFilter::try_from_env("OXCART_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // oxcart's spans whatever the filter: a line logged in one is stamped with its trace,
    // and a layer sees only the spans its filter lets through. (Spans are not lines.)
    let own = filter_fn(|meta| meta.is_span() && meta.target().starts_with("oxcart"));
    log::layer(format, handle).with_filter(filter.or(own))
}

/// The subscriber this crate's layers are part of, for reading a span's trace context.
///
/// That needs the subscriber itself, and while an event is being dispatched `tracing`
/// answers "which subscriber?" with none (it guards a subscriber against re-entering
/// itself), so the subscriber is captured here when it is built.
#[derive(Clone, Default)]
pub(crate) struct SubscriberHandle(Arc<OnceLock<WeakDispatch>>);

impl SubscriberHandle {
    /// The trace context of the innermost traced span in `scope` (leaf first): spans of
    /// other crates are not traced, and a log line inside one belongs to its traced parent.
    pub(crate) fn trace_context<'a, S>(
        &self,
        mut scope: Scope<'a, S>,
    ) -> Option<opentelemetry::Context>
    where
        S: LookupSpan<'a>,
    {
        use opentelemetry::trace::TraceContextExt as _;
        let dispatch = self.0.get()?.upgrade()?;
        scope.find_map(|span| {
            let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
            cx.span().span_context().is_valid().then_some(cx)
        })
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SubscriberHandle {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// `service.name` and `service.version`, unless the standard variables already say.
fn resource(settings: &Settings) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let mut builder = Resource::builder();
    if !named {
        builder = builder.with_service_name(settings.service_name.clone());
    }
    if detected
        .get(&opentelemetry::Key::from_static_str("service.version"))
        .is_none()
    {
        builder = builder.with_attribute(KeyValue::new(
            "service.version",
            settings.service_version.clone(),
        ));
    }
    builder.build()
}

#[cfg(feature = "otlp")]
fn exporter() -> anyhow::Result<Option<(export::Exporter, String)>> {
    export::from_env()
}

#[cfg(not(feature = "otlp"))]
fn exporter() -> anyhow::Result<Option<(Never, String)>> {
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
    {
        anyhow::bail!(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, but this build has no OTLP exporter; build with the default features"
        );
    }
    Ok(None)
}

#[cfg(not(feature = "otlp"))]
enum Never {}

#[cfg(not(feature = "otlp"))]
impl Never {
    fn install(
        self,
        _: opentelemetry_sdk::trace::TracerProviderBuilder,
    ) -> (opentelemetry_sdk::trace::TracerProviderBuilder, ()) {
        match self {}
    }
}
