//! `metaward bench --protocol fhir`: concurrent HTTP/1.1 keep-alive connections POST device
//! Observations (one per request, or transaction Bundles of `--batch` Observations) to a real
//! server in this process, each answered only once durable. Prints resources/s and the
//! request latency (send to complete answer) p50/p99, as a table and one JSON line.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::bench::BenchArgs;

struct Load {
    requests: u64,
    resources: u64,
    failures: u64,
    latencies_ms: Vec<f64>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("metaward-bench-fhir-{}", std::process::id()));
    let config = server::ServerConfig::ephemeral(data.clone());
    let server = server::Server::start(config).await?;
    let ward = crate::demo::sim_ward(args.seed, args.beds, server::pipeline::now());
    let setup = crate::demo::setup_of(&ward, "bench");
    let patients: Vec<String> = setup.patients.iter().map(|p| p.id.to_string()).collect();
    server.apply_setup(setup).await?;
    anyhow::ensure!(!patients.is_empty(), "the simulated ward has no patients");

    let addr = server.http_addr();
    let token: std::sync::Arc<str> = crate::bench::bench_token(&server).await?.into();
    let batch = args.batch.max(1);
    let warmup_end = Instant::now() + Duration::from_secs(args.warmup);
    let end = warmup_end + Duration::from_secs(args.seconds);
    let mut workers = Vec::new();
    for connection in 0..args.connections.max(1) {
        let patient = patients[connection % patients.len()].clone();
        workers.push(tokio::spawn(drive(
            addr,
            token.clone(),
            connection,
            patient,
            batch,
            warmup_end,
            end,
        )));
    }
    let mut load = Load {
        requests: 0,
        resources: 0,
        failures: 0,
        latencies_ms: Vec::new(),
    };
    for worker in workers {
        let done = worker.await??;
        load.requests += done.requests;
        load.resources += done.resources;
        load.failures += done.failures;
        load.latencies_ms.extend(done.latencies_ms);
    }
    let seconds = args.seconds as f64;
    load.latencies_ms.sort_by(f64::total_cmp);
    let quantile = |q: f64| crate::bench::quantile(&load.latencies_ms, q);
    let result = json!({
        "protocol": "fhir",
        "connections": args.connections,
        "batch": batch,
        "seconds": args.seconds,
        "requests_per_s": load.requests as f64 / seconds,
        "resources_per_s": load.resources as f64 / seconds,
        "failures": load.failures,
        "latency_ms": { "n": load.latencies_ms.len(), "p50": quantile(0.5), "p99": quantile(0.99), "p999": quantile(0.999), "max": load.latencies_ms.last() },
        "server_observations_accepted": sum_metric(&server.metrics_text(), "metaward_observations_accepted_total"),
    });
    println!("metric                         value");
    println!("protocol                       fhir");
    println!("connections                    {}", args.connections);
    println!("observations per request       {batch}");
    println!(
        "requests/s (201/200)           {:.1}",
        load.requests as f64 / seconds
    );
    println!(
        "resources/s (accepted)         {:.1}",
        load.resources as f64 / seconds
    );
    println!("failed requests                {}", load.failures);
    println!("latency p50 ms                 {:.2}", quantile(0.5));
    println!("latency p99 ms                 {:.2}", quantile(0.99));
    println!("latency p99.9 ms               {:.2}", quantile(0.999));
    println!("requests measured              {}", load.latencies_ms.len());
    println!("{result}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(data);
    Ok(())
}

fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn observation(device: &str, patient: &str, time_ms: i64, heart_rate: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": fhir::datetime::format(model::Timestamp(time_ms)),
        "valueQuantity": {"value": heart_rate, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
        "device": {"reference": format!("Device/{device}")}
    })
}

/// One connection's loop: POST, read the whole answer, count it if past the warm-up.
async fn drive(
    addr: std::net::SocketAddr,
    // A bench runs for less than an access token's 15 minutes.
    token: std::sync::Arc<str>,
    connection: usize,
    patient: String,
    batch: usize,
    warmup_end: Instant,
    end: Instant,
) -> anyhow::Result<Load> {
    let stream = TcpStream::connect(addr)
        .await
        .context("connecting to the server")?;
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    let device = format!("fhir-bench-{connection}");
    let mut load = Load {
        requests: 0,
        resources: 0,
        failures: 0,
        latencies_ms: Vec::new(),
    };
    let mut n = 0u64;
    while Instant::now() < end {
        let now = server::pipeline::now().millis();
        let (path, body) = if batch == 1 {
            n += 1;
            (
                "/fhir/Observation",
                observation(&device, &patient, now, 60.0 + (n % 40) as f64),
            )
        } else {
            let entries: Vec<Value> = (0..batch)
                .map(|i| {
                    n += 1;
                    json!({
                        "resource": observation(&device, &patient, now - (batch - i) as i64, 60.0 + (n % 40) as f64),
                        "request": {"method": "POST", "url": "Observation"}
                    })
                })
                .collect();
            (
                "/fhir",
                json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
            )
        };
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let started = Instant::now();
        stream.get_mut().write_all(request.as_bytes()).await?;
        let status = read_response(&mut stream).await?;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if started < warmup_end {
            continue;
        }
        if matches!(status, 200 | 201) {
            load.requests += 1;
            load.resources += batch as u64;
            load.latencies_ms.push(elapsed_ms);
        } else {
            load.failures += 1;
        }
    }
    Ok(load)
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status.
async fn read_response(stream: &mut BufReader<TcpStream>) -> anyhow::Result<u16> {
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line `{line}`"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(status)
}
