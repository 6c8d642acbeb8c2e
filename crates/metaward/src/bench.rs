//! `metaward bench`: N simulated beds publish through the real MQTT socket to a real server in
//! this process; a WebSocket client measures how long each numeric takes from its device
//! timestamp to the browser's socket, and how long each alarm raised takes from the sample that
//! raised it (the alarm's `raised_at`: the sample's device time for limit alarms, the receipt
//! of the message for score and technical ones) to the socket. Prints a table and one JSON line.
//!
//! With `--protocol hl7`, one MLLP connection per bed sends IHE PCD-01 ORU^R01 messages (vital
//! numerics and one second of ECG) back to back, each waiting for its ACK as original mode
//! does; it prints messages/s and the acknowledgment latency (send to AA, which includes the
//! log's fsync).
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
    pub beds: usize,
    /// Seconds to measure, after a warm-up
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Seconds of warm-up not measured
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Seed of the simulated ward
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated time per real time; >1 sends more messages per second per bed (mqtt)
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// The device protocol to load: `mqtt` (the simulator), `hl7` (PCD-01 over MLLP) or
    /// `fhir` (Observation POSTs)
    #[arg(long, default_value = "mqtt", value_parser = ["mqtt", "hl7", "fhir"])]
    pub protocol: String,
    /// fhir: concurrent keep-alive HTTP connections
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// fhir: Observations per request (1: POST /fhir/Observation; more: a transaction Bundle)
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Instead: time importing this directory of FHIR R4 JSON into the medical record
    #[arg(long)]
    import: Option<std::path::PathBuf>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.import {
        return crate::import::bench(dir).await;
    }
    if args.protocol == "fhir" {
        return crate::bench_fhir::run(args).await;
    }
    if args.protocol == "hl7" {
        return run_hl7(args).await;
    }
    let data = std::env::temp_dir().join(format!("metaward-bench-{}", std::process::id()));
    let config = server::ServerConfig::ephemeral(data.clone());
    let server = server::Server::start(config).await?;
    let ward = crate::demo::sim_ward(args.seed, args.beds, server::pipeline::now());
    server
        .apply_setup(crate::demo::setup_of(&ward, "bench"))
        .await?;

    let token = bench_token(&server).await?;
    let url = format!(
        "ws://{}/api/v1/stream?access_token={token}",
        server.http_addr()
    );
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
    let mut alarm_latencies_ms: Vec<f64> = Vec::new();
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
        if message["type"] == "alarms" {
            for event in message["items"].as_array().into_iter().flatten() {
                if event["transition"] == "raised"
                    && let Some(raised_at) = event["alarm"]["raised_at"].as_f64()
                {
                    alarm_latencies_ms.push(received_ms - raised_at);
                }
            }
        }
    }
    let at_end = Counts::of(&server);
    stop.cancel();
    let published = publisher.await??;
    let seconds = args.seconds as f64;
    latencies_ms.sort_by(f64::total_cmp);
    alarm_latencies_ms.sort_by(f64::total_cmp);
    let quantile = |q: f64| self::quantile(&latencies_ms, q);
    let alarm_quantile = |q: f64| self::quantile(&alarm_latencies_ms, q);
    let result = json!({
        "beds": args.beds,
        "seconds": args.seconds,
        "messages_per_s": (at_end.messages - at_start.messages) / seconds,
        "observations_per_s": (at_end.observations - at_start.observations) / seconds,
        "samples_per_s": (at_end.samples - at_start.samples) / seconds,
        "latency_ms": { "n": latencies_ms.len(), "p50": quantile(0.5), "p99": quantile(0.99), "p999": quantile(0.999), "max": latencies_ms.last() },
        "alarm_latency_ms": { "n": alarm_latencies_ms.len(), "p50": alarm_quantile(0.5), "p99": alarm_quantile(0.99), "max": alarm_latencies_ms.last() },
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
    println!("alarm latency p50 ms           {:.1}", alarm_quantile(0.5));
    println!("alarm latency p99 ms           {:.1}", alarm_quantile(0.99));
    println!(
        "alarms raised, measured        {}",
        alarm_latencies_ms.len()
    );
    println!(
        "peak RSS MiB (server+load)     {:.1}",
        result["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
    );
    println!("{result}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(data);
    Ok(())
}

async fn run_hl7(args: BenchArgs) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("metaward-bench-hl7-{}", std::process::id()));
    let config = server::ServerConfig::ephemeral(data.clone());
    let server = server::Server::start(config).await?;
    let ward = crate::demo::sim_ward(args.seed, args.beds, server::pipeline::now());
    server
        .apply_setup(crate::demo::setup_of(&ward, "bench"))
        .await?;
    let beds: Vec<String> = server
        .ward()
        .directory()
        .wards
        .iter()
        .flat_map(|ward| &ward.rooms)
        .flat_map(|room| &room.beds)
        .map(|bed| bed.id.clone())
        .collect();

    let warmup_end = Instant::now() + Duration::from_secs(args.warmup);
    let end = warmup_end + Duration::from_secs(args.seconds);
    let mut senders = Vec::new();
    for (index, bed) in beds.into_iter().enumerate() {
        senders.push(tokio::spawn(mllp_sender(
            server.mllp_addr(),
            index,
            bed,
            warmup_end,
            end,
        )));
    }
    tokio::time::sleep_until(warmup_end.into()).await;
    let at_start = Counts::of(&server);
    tokio::time::sleep_until(end.into()).await;
    let at_end = Counts::of(&server);
    let mut latencies_ms = Vec::new();
    let mut refused = 0u64;
    for sender in senders {
        let outcome = sender.await??;
        latencies_ms.extend(outcome.latencies_ms);
        refused += outcome.refused;
    }
    let seconds = args.seconds as f64;
    latencies_ms.sort_by(f64::total_cmp);
    let quantile = |q: f64| self::quantile(&latencies_ms, q);
    let result = json!({
        "protocol": "hl7",
        "beds": args.beds,
        "connections": args.beds,
        "seconds": args.seconds,
        "messages_per_s": (at_end.messages - at_start.messages) / seconds,
        "observations_per_s": (at_end.observations - at_start.observations) / seconds,
        "samples_per_s": (at_end.samples - at_start.samples) / seconds,
        "ack_latency_ms": { "n": latencies_ms.len(), "p50": quantile(0.5), "p99": quantile(0.99), "p999": quantile(0.999), "max": latencies_ms.last() },
        "refused": refused,
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("metric                         value");
    println!("protocol                       hl7 (PCD-01 over MLLP)");
    println!("beds (one connection each)     {}", args.beds);
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
    println!("ack latency p50 ms             {:.1}", quantile(0.5));
    println!("ack latency p99 ms             {:.1}", quantile(0.99));
    println!("ack latency p99.9 ms           {:.1}", quantile(0.999));
    println!("acks measured                  {}", latencies_ms.len());
    println!("refused (AE/AR)                {refused}");
    println!(
        "peak RSS MiB (server+load)     {:.1}",
        result["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
    );
    println!("{result}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(data);
    Ok(())
}

struct SenderOutcome {
    latencies_ms: Vec<f64>,
    refused: u64,
}

/// One monitor's gateway: ORU^R01 after ORU^R01 on one connection, each waiting for its ACK.
async fn mllp_sender(
    addr: std::net::SocketAddr,
    index: usize,
    bed: String,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<SenderOutcome> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let device = format!("0a0b0c0d0e{index:06x}");
    let mut outcome = SenderOutcome {
        latencies_ms: Vec::new(),
        refused: 0,
    };
    let mut pending = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let message = pcd01_message(&device, &bed, n, server::pipeline::now());
        let sent = Instant::now();
        stream.write_all(&hl7::mllp::frame(&message)).await?;
        let ack = loop {
            if let Some(at) = pending.iter().position(|&b| b == hl7::mllp::END) {
                let frame: Vec<u8> = pending.drain(..=at).collect();
                break frame;
            }
            let read = stream.read(&mut buffer).await?;
            anyhow::ensure!(read > 0, "the server closed an mllp connection");
            pending.extend_from_slice(&buffer[..read]);
        };
        if sent >= measure_from {
            outcome
                .latencies_ms
                .push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        if !String::from_utf8_lossy(&ack).contains("\rMSA|AA|") {
            outcome.refused += 1;
        }
    }
    Ok(outcome)
}

/// A bedside monitor's PCD-01 message: HR, SpO2, pulse, respiration, NIBP, temperature and one
/// second of ECG lead II at 250 Hz.
fn pcd01_message(device: &str, bed: &str, n: u64, now: model::Timestamp) -> Vec<u8> {
    let t = hl7::time::format_dtm(now);
    let wobble = (n % 7) as f64;
    let ecg: Vec<String> = (0..250)
        .map(|i| format!("{:.3}", ((i as f64) * 0.1).sin() * 0.8))
        .collect();
    let mut text = format!(
        "MSH|^~\\&|GW^{device}^EUI-64|ICU|metaward||{t}||ORU^R01^ORU_R01|{device}-{n}|P|2.6|||NE|AL||UNICODE UTF-8\r\
         PV1||I|ICU^^{bed}\r\
         OBR|1|||182777000^monitoring of patient^SNOMED-CT|||{t}\r\
         OBX|1||69798^MDC_DEV_ECG^MDC|1.0.0.0|||||||X|||{t}||||{device}^EUI-64\r"
    );
    let numerics = [
        (
            "147842^MDC_ECG_HEART_RATE",
            "1.1.1.1",
            72.0 + wobble,
            "264864^MDC_DIM_BEAT_PER_MIN",
        ),
        (
            "150456^MDC_PULS_OXIM_SAT_O2",
            "1.2.1.1",
            96.0 + wobble / 7.0,
            "262688^MDC_DIM_PERCENT",
        ),
        (
            "149530^MDC_PULS_OXIM_PULS_RATE",
            "1.2.1.2",
            71.0 + wobble,
            "264864^MDC_DIM_BEAT_PER_MIN",
        ),
        (
            "151562^MDC_RESP_RATE",
            "1.3.1.1",
            16.0 + wobble / 2.0,
            "264928^MDC_DIM_RESP_PER_MIN",
        ),
        (
            "150021^MDC_PRESS_BLD_NONINV_SYS",
            "1.4.1.1",
            121.0 + wobble,
            "266016^MDC_DIM_MMHG",
        ),
        (
            "150022^MDC_PRESS_BLD_NONINV_DIA",
            "1.4.1.2",
            79.0 + wobble,
            "266016^MDC_DIM_MMHG",
        ),
        (
            "150364^MDC_TEMP_BODY",
            "1.5.1.1",
            36.8 + wobble / 10.0,
            "268192^MDC_DIM_DEGC",
        ),
    ];
    for (i, (code, sub_id, value, unit)) in numerics.iter().enumerate() {
        text.push_str(&format!(
            "OBX|{}|NM|{code}^MDC|{sub_id}|{value:.1}|{unit}^MDC|||||R\r",
            i + 2
        ));
    }
    text.push_str(&format!(
        "OBX|9|NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1.1.2.1|{}|266418^MDC_DIM_MILLI_VOLT^MDC|||||R\r\
         OBX|10|NM|67981^MDC_ATTR_TIME_PD_SAMP^MDC|1.1.2.1.1|4|ms^ms^UCUM|||||R\r",
        ecg.join("^")
    ));
    text.into_bytes()
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

/// A bench user (admin of every ward, a generated password) signed in over the real login: the
/// stream and FHIR posting need a token like any client.
pub async fn bench_token(server: &server::Server) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let name = format!("bench-{}", std::process::id());
    let password = server.create_user(&name, "admin", None).await?;
    let body = serde_json::json!({ "username": name, "password": password }).to_string();
    let addr = server.http_addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let json = answer
        .split_once("\r\n\r\n")
        .map(|(_, json)| json)
        .unwrap_or("");
    let session: serde_json::Value = serde_json::from_str(json)?;
    session["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the bench user could not sign in"))
}

/// The `q` quantile (nearest rank) of sorted values; NaN when there are none. Every bench mode
/// reports its latencies with it.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}
