//! An OTLP/gRPC receiver inside the test: it decodes what a process exports (traces, metrics,
//! logs) so tests can assert on it. No collector binary exists on our machines.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
pub struct Received {
    pub traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    pub metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    pub logs: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        r: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.traces.lock().unwrap().push(r.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        r: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.metrics.lock().unwrap().push(r.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Received {
    async fn export(
        &self,
        r: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.logs.lock().unwrap().push(r.into_inner());
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

pub async fn start() -> (SocketAddr, Received) {
    let addr: SocketAddr = format!("127.0.0.1:{}", super::free_tcp_port())
        .parse()
        .unwrap();
    let received = Received::default();
    let r = received.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(r.clone()))
            .add_service(MetricsServiceServer::new(r.clone()))
            .add_service(LogsServiceServer::new(r))
            .serve(addr)
            .await
            .unwrap();
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    (addr, received)
}

impl Received {
    /// Every span with the `service.name` of its resource.
    pub fn spans(&self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for req in self.traces.lock().unwrap().iter() {
            for rs in &req.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .map(|a| format!("{:?}", a.value))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }

    /// Metric names seen, with the sum of their data points' values (sums and gauges) or the
    /// count of observations (histograms) in the latest export that has them.
    pub fn metric_values(&self) -> std::collections::BTreeMap<String, f64> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
        let mut out = std::collections::BTreeMap::new();
        for req in self.metrics.lock().unwrap().iter() {
            for rm in &req.resource_metrics {
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        let number =
                            |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p
                                .value
                            {
                                Some(Value::AsInt(i)) => i as f64,
                                Some(Value::AsDouble(d)) => d,
                                None => 0.0,
                            };
                        let value = match &m.data {
                            Some(Data::Sum(s)) => s.data_points.iter().map(number).sum(),
                            Some(Data::Gauge(g)) => g.data_points.iter().map(number).sum(),
                            Some(Data::Histogram(h)) => {
                                h.data_points.iter().map(|p| p.count as f64).sum()
                            }
                            _ => 0.0,
                        };
                        out.insert(m.name.clone(), value);
                    }
                }
            }
        }
        out
    }

    /// Every attribute string value anywhere in what was received (for leak checks).
    pub fn all_text(&self) -> String {
        format!(
            "{:?}{:?}{:?}",
            self.traces.lock().unwrap(),
            self.metrics.lock().unwrap(),
            self.logs.lock().unwrap()
        )
    }

    pub fn is_empty(&self) -> bool {
        self.traces.lock().unwrap().is_empty()
            && self.metrics.lock().unwrap().is_empty()
            && self.logs.lock().unwrap().is_empty()
    }
}
