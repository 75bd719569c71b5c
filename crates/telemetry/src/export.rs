//! The OTLP span exporter, configured by the standard environment variables.
//!
//! | variable | effect |
//! | --- | --- |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the collector's base URL; export is off without it |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the full traces URL, instead of the base |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf` (the default), `http/json` or `grpc` |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT` | read by the exporter itself |
//! | `OTEL_TRACES_SAMPLER`, `…_ARG` | read by the SDK; default `parentbased_always_on` |
//! | `OTEL_BSP_*` | the batch processor's queue, batch size and delay |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | export off |
//!
//! Spans are queued and exported in batches from a thread of the SDK's own, so a slow
//! or absent collector never holds up a request: when the queue is full, spans are
//! dropped, not waited for.

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{SdkTracerProvider, TracerProviderBuilder};

/// A configured exporter, ready to be put behind the batch processor.
pub(crate) struct Exporter(SpanExporter);

impl Exporter {
    pub(crate) fn install(self, builder: TracerProviderBuilder) -> TracerProviderBuilder {
        builder.with_batch_exporter(self.0)
    }
}

/// The exporter the environment asks for, and a description of it for the logs; `None`
/// when export is off.
pub(crate) fn from_env() -> anyhow::Result<Option<(Exporter, String)>> {
    from(&|name| {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
    })
}

fn from(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<(Exporter, String)>> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match env("OTEL_TRACES_EXPORTER").as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => bail!("OTEL_TRACES_EXPORTER: `{other}` is not supported; use otlp or none"),
    }
    // The traces endpoint is used as it is; the general one is a base that the HTTP
    // protocols append the signal's path to.
    let (endpoint, http_url) = match (
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        env("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(traces), _) => (traces.clone(), traces),
        (None, Some(base)) => {
            let url = format!("{}/v1/traces", base.trim_end_matches('/'));
            (base, url)
        }
        (None, None) => return Ok(None),
    };
    let uri: http::Uri = endpoint
        .parse()
        .with_context(|| format!("OTEL_EXPORTER_OTLP_ENDPOINT: `{endpoint}` is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => bail!(
            "OTEL_EXPORTER_OTLP_ENDPOINT: `{endpoint}`: this build sends OTLP in plain text, to a \
             collector beside it (a sidecar or node agent); use an http:// address"
        ),
        _ => bail!("OTEL_EXPORTER_OTLP_ENDPOINT: `{endpoint}` must start with http://"),
    }
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".to_owned());
    let exporter = match protocol.as_str() {
        "grpc" => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&endpoint)
            .build(),
        "http/protobuf" | "http/json" => {
            let encoding = if protocol == "http/json" {
                Protocol::HttpJson
            } else {
                Protocol::HttpBinary
            };
            let timeout = env("OTEL_EXPORTER_OTLP_TIMEOUT")
                .and_then(|ms| ms.parse().ok())
                .map_or(Duration::from_secs(10), Duration::from_millis);
            SpanExporter::builder()
                .with_http()
                .with_protocol(encoding)
                .with_endpoint(&http_url)
                .with_http_client(OnRuntime::new(timeout)?)
                .build()
        }
        other => bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL: `{other}` is not supported; use http/protobuf, http/json or grpc"
        ),
    }
    .context("building the OTLP span exporter")?;
    let target = if protocol == "grpc" {
        endpoint
    } else {
        http_url
    };
    Ok(Some((
        Exporter(exporter),
        format!("{protocol} to {target}"),
    )))
}

/// Flushes the queue and stops the exporter.
pub(crate) async fn shutdown(provider: SdkTracerProvider) {
    // The batch processor's thread does the flushing, through clients that run on this
    // runtime: wait for it on a blocking thread, leaving the runtime's workers free.
    match tokio::task::spawn_blocking(move || provider.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("warning: could not flush the last spans: {error}"),
        Err(error) => eprintln!("warning: could not flush the last spans: {error}"),
    }
}

/// hyper's client, run on the process's tokio runtime.
///
/// The batch processor exports from a thread of its own, outside any runtime, and hyper
/// needs one for its connections and timers; each request is handed to the runtime and
/// its answer awaited from that thread.
#[derive(Debug, Clone)]
struct OnRuntime {
    client: HyperClient,
    runtime: tokio::runtime::Handle,
}

impl OnRuntime {
    fn new(timeout: Duration) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("the OTLP exporter must be set up inside the tokio runtime")?;
        Ok(Self {
            client: HyperClient::with_default_connector(timeout, None),
            runtime,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configure(vars: &[(&str, &str)]) -> anyhow::Result<Option<String>> {
        let env = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        };
        Ok(from(&env)?.map(|(_, describe)| describe))
    }

    #[tokio::test]
    async fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(configure(&[]).unwrap(), None);
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert_eq!(
            configure(&[endpoint, ("OTEL_SDK_DISABLED", "true")]).unwrap(),
            None
        );
        assert_eq!(
            configure(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn http_protobuf_is_the_default_and_grpc_is_chosen_by_name() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert_eq!(
            configure(&[endpoint]).unwrap().unwrap(),
            "http/protobuf to http://127.0.0.1:4318/v1/traces"
        );
        let grpc = configure(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(grpc.unwrap().unwrap(), "grpc to http://127.0.0.1:4317");
    }

    #[tokio::test]
    async fn bad_settings_are_named() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        let error = configure(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]).unwrap_err();
        assert!(
            error.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{error}"
        );
        let error = configure(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]).unwrap_err();
        assert!(
            error.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{error}"
        );
        let error = configure(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(
            error.to_string().contains("OTEL_TRACES_EXPORTER"),
            "{error}"
        );
    }
}
