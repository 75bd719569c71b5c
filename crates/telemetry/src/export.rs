//! The OTLP span exporter, configured by the standard environment variables.
//!
//! | variable | effect |
//! | --- | --- |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the collector's base URL; export is off without it |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the full traces URL, instead of the base |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf` (the default), `http/json` or `grpc` |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT` | read by the exporter itself |
//! | `OTEL_EXPORTER_OTLP_CERTIFICATE` | PEM CAs an `https://` collector is verified against, besides the public roots |
//! | `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`, `…_CLIENT_KEY` | PEM certificate and key for mutual TLS |
//! | `OTEL_TRACES_SAMPLER`, `…_ARG` | read by the SDK; default `parentbased_always_on` |
//! | `OTEL_BSP_*` | the batch processor's queue, batch size and delay |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | export off |
//!
//! Each has a `…_TRACES_…` form (`OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`) that wins over it.
//!
//! Spans are queued and exported in batches from a thread of the SDK's own, so a slow
//! or absent collector never holds up a request: when the queue is full, spans are
//! dropped, not waited for. [`Exporter::probe`] reaches the collector once at start-up,
//! so that a certificate it refuses is known then rather than as spans quietly lost.

use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{
    Protocol, SpanExporter, WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _,
};
use opentelemetry_sdk::trace::{SdkTracerProvider, TracerProviderBuilder};

/// A configured exporter, ready to be put behind the batch processor.
pub(crate) struct Exporter {
    exporter: SpanExporter,
    probe: Probe,
}

/// How to reach the collector once, as the exporter would.
#[derive(Clone)]
pub(crate) enum Probe {
    /// An empty export request: a collector answers it, and does nothing.
    Http {
        client: reqwest::Client,
        url: String,
        json: bool,
    },
    /// A gRPC connection: TCP, the TLS handshake and HTTP/2's.
    Grpc(Box<tonic::transport::Endpoint>),
}

impl Exporter {
    pub(crate) fn install(self, builder: TracerProviderBuilder) -> (TracerProviderBuilder, Probe) {
        (builder.with_batch_exporter(self.exporter), self.probe)
    }
}

impl Probe {
    /// Reaches the collector once; the error says why not.
    pub(crate) async fn run(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match self {
            Probe::Http { client, url, json } => {
                let (content_type, body) = if json {
                    ("application/json", &b"{}"[..])
                } else {
                    ("application/x-protobuf", &b""[..])
                };
                let response = client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body)
                    .send()
                    .await?;
                if !response.status().is_success() {
                    return Err(format!("{url} answered {}", response.status()).into());
                }
                Ok(())
            }
            Probe::Grpc(endpoint) => {
                endpoint.connect().await?;
                Ok(())
            }
        }
    }
}

/// The TLS settings of the standard variables: extra CAs, and a client identity.
struct Tls {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    fn from(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        // The signal's own variable first, then the general one.
        let var = |name: &str| {
            env(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
                .map(|v| (format!("OTEL_EXPORTER_OTLP_TRACES_{name}"), v))
                .or_else(|| {
                    env(&format!("OTEL_EXPORTER_OTLP_{name}"))
                        .map(|v| (format!("OTEL_EXPORTER_OTLP_{name}"), v))
                })
        };
        let read = |name: &str| -> anyhow::Result<Option<Vec<u8>>> {
            let Some((variable, path)) = var(name) else {
                return Ok(None);
            };
            std::fs::read(&path)
                .map(Some)
                .with_context(|| format!("{variable}: cannot read {path}"))
        };
        let ca = read("CERTIFICATE")?;
        if let (Some(pem), Some((variable, path))) = (&ca, var("CERTIFICATE"))
            && reqwest::Certificate::from_pem_bundle(pem).map_or(true, |c| c.is_empty())
        {
            bail!("{variable}: {path} holds no PEM certificate");
        }
        let identity = match (read("CLIENT_CERTIFICATE")?, read("CLIENT_KEY")?) {
            (Some(certificate), Some(key)) => Some((certificate, key)),
            (None, None) => None,
            _ => bail!(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together"
            ),
        };
        Ok(Self { ca, identity })
    }

    fn reqwest(&self, builder: reqwest::ClientBuilder) -> anyhow::Result<reqwest::ClientBuilder> {
        let mut builder = builder;
        if let Some(pem) = &self.ca {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some((certificate, key)) = &self.identity {
            let pem = [certificate.as_slice(), b"\n", key.as_slice()].concat();
            builder = builder.identity(
                reqwest::Identity::from_pem(&pem)
                    .context("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and …_CLIENT_KEY")?,
            );
        }
        Ok(builder)
    }

    fn tonic(&self, host: &str) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().with_webpki_roots().domain_name(host);
        if let Some(pem) = &self.ca {
            config = config.ca_certificate(Certificate::from_pem(pem));
        }
        if let Some((certificate, key)) = &self.identity {
            config = config.identity(Identity::from_pem(certificate, key));
        }
        config
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
    let secure = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => bail!("OTEL_EXPORTER_OTLP_ENDPOINT: `{endpoint}` must start with http:// or https://"),
    };
    let tls = Tls::from(env)?;
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".to_owned());
    let timeout = env("OTEL_EXPORTER_OTLP_TIMEOUT")
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
    let (exporter, probe, target) = match protocol.as_str() {
        "grpc" => {
            let mut builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&endpoint);
            let mut probe = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .with_context(|| format!("OTEL_EXPORTER_OTLP_ENDPOINT: `{endpoint}`"))?
                .connect_timeout(timeout);
            if secure {
                let config = tls.tonic(uri.host().unwrap_or_default());
                builder = builder.with_tls_config(config.clone());
                probe = probe
                    .tls_config(config)
                    .context("OTEL_EXPORTER_OTLP_CERTIFICATE")?;
            }
            (builder.build(), Probe::Grpc(Box::new(probe)), endpoint)
        }
        "http/protobuf" | "http/json" => {
            let json = protocol == "http/json";
            let encoding = if json {
                Protocol::HttpJson
            } else {
                Protocol::HttpBinary
            };
            let client = tls
                .reqwest(reqwest::Client::builder().timeout(timeout))?
                .build()
                .context("the OTLP exporter's HTTP client")?;
            let exporter = SpanExporter::builder()
                .with_http()
                .with_protocol(encoding)
                .with_endpoint(&http_url)
                .with_http_client(OnRuntime::new(client.clone())?)
                .build();
            let probe = Probe::Http {
                client,
                url: http_url.clone(),
                json,
            };
            (exporter, probe, http_url)
        }
        other => bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL: `{other}` is not supported; use http/protobuf, http/json or grpc"
        ),
    };
    let exporter = exporter.context("building the OTLP span exporter")?;
    Ok(Some((
        Exporter { exporter, probe },
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

/// reqwest's client (rustls, with the configured CAs), run on the process's tokio runtime.
///
/// The batch processor exports from a thread of its own, outside any runtime, and the
/// client needs one for its connections and timers; each request is handed to the
/// runtime and its answer awaited from that thread.
#[derive(Debug, Clone)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl OnRuntime {
    fn new(client: reqwest::Client) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .context("the OTLP exporter must be set up inside the tokio runtime")?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move {
                let response = client.execute(reqwest::Request::try_from(request)?).await?;
                let mut answer = Response::builder().status(response.status());
                if let Some(headers) = answer.headers_mut() {
                    *headers = response.headers().clone();
                }
                Ok(answer.body(response.bytes().await?)?)
            })
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
        let error = configure(&[
            endpoint,
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
        ])
        .unwrap_err();
        assert!(
            error.to_string().contains("OTEL_EXPORTER_OTLP_CERTIFICATE"),
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
