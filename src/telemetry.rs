//! Logs, traces and metrics for every process, one setup.
//!
//! Logs always go to stderr (pretty or JSON). When an OTLP endpoint is configured with the
//! standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, or a signal-specific one) and
//! `DISABLE_TELEMETRY` is not `true`, traces, metrics and logs are also exported over OTLP/gRPC.
//! The resource names the service, its version and the instance; `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` apply on top. Nothing personal (SDP, tokens, passwords, user
//! addresses, display names) is ever put in a span, metric or log attribute.

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use clap::{ArgAction, Args, ValueEnum};

pub mod metrics;

/// Logging and telemetry settings every subcommand shares.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Service name used in logs and telemetry.
    #[arg(long, env = "APP_NAME", default_value = "firesfu", global = true)]
    pub app_name: String,
    /// Deployment environment name (dev, staging, prod).
    #[arg(long, env = "RUN_TIME_ENV", default_value = "dev", global = true)]
    pub run_time_env: String,
    #[arg(
        long,
        env = "FIRESFU_LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax). The default quiets the WebRTC stack's
    /// per-connection chatter and the Firestore listener's target resets (which the emulator
    /// does after every change).
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info,rtc=warn,rtc_ice=warn,rtc_dtls=error,firestore::db::listen_changes::event_loop=error",
        global = true
    )]
    pub log_filter: String,
    /// Turn OpenTelemetry export off.
    #[arg(long, env = "DISABLE_TELEMETRY", default_value_t = false, action = ArgAction::Set, global = true)]
    pub disable_telemetry: bool,
}

/// Flushes and stops exporters when dropped at the end of `main`.
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
    logger: Option<SdkLoggerProvider>,
}

impl Telemetry {
    pub fn exporting(&self) -> bool {
        self.tracer.is_some()
    }

    pub fn shutdown(self) {
        if let Some(t) = &self.tracer {
            let _ = t.force_flush();
            let _ = t.shutdown();
        }
        if let Some(m) = &self.meter {
            let _ = m.force_flush();
            let _ = m.shutdown();
        }
        if let Some(l) = &self.logger {
            let _ = l.force_flush();
            let _ = l.shutdown();
        }
    }
}

fn endpoint_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

fn resource(args: &TelemetryArgs, component: &str, instance: &str) -> Resource {
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by the builder's detectors and
    // win over these defaults.
    let mut builder = Resource::builder_empty()
        .with_service_name(format!("{}-{component}", args.app_name))
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", instance.to_owned()),
            KeyValue::new("deployment.environment.name", args.run_time_env.clone()),
        ]);
    if let Ok(name) = std::env::var("OTEL_SERVICE_NAME") {
        builder = builder.with_service_name(name);
    }
    let from_env = Resource::builder().build();
    builder = builder.with_attributes(
        from_env
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    builder.build()
}

/// Sets up logging and, when configured, OTLP export. `component` is `broadcast`, `sidecar`
/// or `monitor`; `instance` identifies this process. Must run inside the Tokio runtime.
pub fn init(args: &TelemetryArgs, component: &str, instance: &str) -> Telemetry {
    let filter = EnvFilter::try_new(&args.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match args.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let export = !args.disable_telemetry && endpoint_configured();
    let mut telemetry = Telemetry::default();
    let mut otel_layers: Vec<Box<dyn Layer<_> + Send + Sync>> = Vec::new();
    let mut failures = Vec::new();
    if export {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let resource = resource(args, component, instance);
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => {
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource.clone())
                    .build();
                let tracer = provider.tracer("firesfu");
                opentelemetry::global::set_tracer_provider(provider.clone());
                otel_layers.push(tracing_opentelemetry::layer().with_tracer(tracer).boxed());
                telemetry.tracer = Some(provider);
            }
            Err(e) => failures.push(format!("traces: {e}")),
        }
        match opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => {
                let provider = SdkMeterProvider::builder()
                    .with_periodic_exporter(exporter)
                    .with_resource(resource.clone())
                    .build();
                opentelemetry::global::set_meter_provider(provider.clone());
                telemetry.meter = Some(provider);
            }
            Err(e) => failures.push(format!("metrics: {e}")),
        }
        match opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => {
                let provider = SdkLoggerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build();
                // The exporter's own logs must not feed back into it.
                let bridge =
                    opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(
                        &provider,
                    )
                    .with_filter(EnvFilter::new(
                        "info,opentelemetry=off,tonic=off,h2=off,hyper=off,tower=off",
                    ));
                otel_layers.push(bridge.boxed());
                telemetry.logger = Some(provider);
            }
            Err(e) => failures.push(format!("logs: {e}")),
        }
    }
    // An empty `Vec` layer would report every callsite as never interesting and silence the
    // whole subscriber, hence the `Option`.
    let otel_layers = (!otel_layers.is_empty()).then_some(otel_layers);
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel_layers)
        .try_init();
    if let Err(e) = result {
        eprintln!("logging was already initialised: {e}");
    }
    for failure in failures {
        tracing::error!("cannot set up OpenTelemetry export of {failure}");
    }
    if export {
        tracing::info!(component, "OpenTelemetry export on (OTLP/gRPC)");
    } else if args.disable_telemetry {
        tracing::info!("OpenTelemetry export off (DISABLE_TELEMETRY=true)");
    } else {
        tracing::info!("OpenTelemetry export off: no OTEL_EXPORTER_OTLP_ENDPOINT");
    }
    telemetry
}

/// The W3C `traceparent` of the current span, when tracing is exported.
pub fn current_traceparent() -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.remove("traceparent")
}

/// Makes `span` a child of the remote span a `traceparent` names.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(cx);
}
