//! `metaward bench`: N simulated beds publish through the real MQTT socket to a real server in
//! this process; a WebSocket client measures how long each numeric takes from its device
//! timestamp to the browser's socket. Prints a table and one JSON line.
//!
//! The load generator shares the process with the server, so the peak RSS printed is an upper
//! bound for the server alone.

use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Simulated beds
    #[arg(long, default_value_t = 40)]
    beds: usize,
    /// Seconds to measure, after a warm-up
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of warm-up not measured
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seed of the simulated ward
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated time per real time; >1 sends more messages per second per bed
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Instead: time importing this directory of FHIR R4 JSON into the medical record
    #[arg(long)]
    import: Option<std::path::PathBuf>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.import {
        return crate::import::bench(dir).await;
    }
    let data = std::env::temp_dir().join(format!("metaward-bench-{}", std::process::id()));
    let config = server::ServerConfig::ephemeral(data.clone());
    let server = server::Server::start(config).await?;
    let ward = crate::demo::sim_ward(args.seed, args.beds, server::pipeline::now());
    server
        .apply_setup(crate::demo::setup_of(&ward, "bench"))
        .await?;

    let url = format!("ws://{}/api/v1/stream", server.http_addr());
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await?;
    let stop = CancellationToken::new();
    let options = sim::PublisherOptions {
        time_scale: args.time_scale,
        ..sim::PublisherOptions::default()
    };
    let publisher = tokio::spawn(sim::run_publisher(
        server.mqtt_addr(),
        ward,
        options,
        stop.clone(),
    ));

    let warmup_end = Instant::now() + Duration::from_secs(args.warmup);
    let end = warmup_end + Duration::from_secs(args.seconds);
    let mut latencies_ms: Vec<f64> = Vec::new();
    let mut at_start = Counts::default();
    let mut started = false;
    while Instant::now() < end {
        let Ok(Some(message)) = tokio::time::timeout_at(end.into(), socket.next()).await else {
            break;
        };
        let tokio_tungstenite::tungstenite::Message::Text(text) = message? else {
            continue;
        };
        if !started && Instant::now() >= warmup_end {
            started = true;
            at_start = Counts::of(&server);
        }
        if !started {
            continue;
        }
        let received_ms = server::pipeline::now().millis() as f64;
        let message: Value = serde_json::from_str(&text)?;
        if message["type"] == "values" {
            for item in message["items"].as_array().into_iter().flatten() {
                if let Some(time) = item["time"].as_f64() {
                    latencies_ms.push(received_ms - time);
                }
            }
        }
    }
    let at_end = Counts::of(&server);
    stop.cancel();
    let published = publisher.await??;
    let seconds = args.seconds as f64;
    latencies_ms.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        latencies_ms
            .get(((latencies_ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let result = json!({
        "beds": args.beds,
        "seconds": args.seconds,
        "messages_per_s": (at_end.messages - at_start.messages) / seconds,
        "observations_per_s": (at_end.observations - at_start.observations) / seconds,
        "samples_per_s": (at_end.samples - at_start.samples) / seconds,
        "latency_ms": { "n": latencies_ms.len(), "p50": quantile(0.5), "p99": quantile(0.99), "p999": quantile(0.999), "max": latencies_ms.last() },
        "published": published.published,
        "acked": published.acked,
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("metric                         value");
    println!("beds                           {}", args.beds);
    println!(
        "messages/s (accepted)          {:.1}",
        result["messages_per_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "observations/s (accepted)      {:.1}",
        result["observations_per_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "samples/s (accepted)           {:.0}",
        result["samples_per_s"].as_f64().unwrap_or(0.0)
    );
    println!("latency p50 ms                 {:.1}", quantile(0.5));
    println!("latency p99 ms                 {:.1}", quantile(0.99));
    println!("latency p99.9 ms               {:.1}", quantile(0.999));
    println!("values measured                {}", latencies_ms.len());
    println!(
        "peak RSS MiB (server+load)     {:.1}",
        result["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
    );
    println!("{result}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(data);
    Ok(())
}

/// What the server has accepted so far, read from its own Prometheus counters.
#[derive(Default)]
struct Counts {
    messages: f64,
    observations: f64,
    samples: f64,
}

impl Counts {
    fn of(server: &server::Server) -> Counts {
        let text = server.metrics_text();
        Counts {
            messages: sum_metric(&text, "metaward_messages_accepted_total"),
            observations: sum_metric(&text, "metaward_observations_accepted_total"),
            samples: sum_metric(&text, "metaward_samples_accepted_total"),
        }
    }
}

fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Peak resident set size of this process (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
