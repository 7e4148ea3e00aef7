//! A minimal OTLP/gRPC trace receiver for benchmarks: it accepts every export, counts the spans
//! and prints the running total once a second. Not a collector: nothing is stored.
//!
//! ```sh
//! cargo run --release --example otlp_sink -- 127.0.0.1:4317
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};

#[derive(Clone, Default)]
struct Count(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for Count {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize =
            request.into_inner().resource_spans.iter().flat_map(|r| r.scope_spans.iter()).map(|s| s.spans.len()).sum();
        self.0.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4317".into());
    let count = Count::default();
    let total = count.0.clone();
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = total.load(Ordering::Relaxed);
            println!("spans: {now} total, {}/s", now - last);
            last = now;
        }
    });
    println!("OTLP/gRPC sink on {addr}");
    tonic::transport::Server::builder().add_service(TraceServiceServer::new(count)).serve(addr.parse()?).await?;
    Ok(())
}
