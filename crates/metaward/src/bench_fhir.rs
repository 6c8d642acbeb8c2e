//! `metaward bench --protocol fhir`: concurrent HTTP/1.1 keep-alive connections POST device
//! Observations (one per request, or transaction Bundles of `--batch` Observations) to a real
//! server in this process, each answered only once durable. Prints resources/s and the
//! request latency (send to complete answer) p50/p99, as a table and one JSON line.
//!
//! Then the same data read back through FHIR search: how long until a posted value is found
//! by `GET /fhir/Observation?_id=` (device data is searched from the store's projection of the
//! log), and searches/s of each patient's newest 50 heart rates, `_sort=-date`, over what the
//! ingest phase wrote (the record and device data merged).

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
    let search = search_phase(addr, &token, &patients, args.connections.max(1)).await?;
    println!(
        "visible in search p50 ms       {:.1}",
        search["visible_ms"]["p50"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "visible in search max ms       {:.1}",
        search["visible_ms"]["max"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "searches/s (newest 50)         {:.1}",
        search["searches_per_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "search latency p50 / p99 ms    {:.2} / {:.2}",
        search["search_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
        search["search_ms"]["p99"].as_f64().unwrap_or(f64::NAN)
    );
    let mut result = result;
    result["search"] = search;
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

/// How long posted values take to be found by search, and how fast a patient's newest values
/// are searched: 20 probes, then `connections` clients searching for 5 s.
async fn search_phase(
    addr: std::net::SocketAddr,
    token: &std::sync::Arc<str>,
    patients: &[String],
    connections: usize,
) -> anyhow::Result<Value> {
    let connect = || async {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        anyhow::Ok(BufReader::new(stream))
    };
    let mut stream = connect().await?;
    let mut visible_ms = Vec::new();
    for probe in 0..20u64 {
        let now = server::pipeline::now().millis();
        let body = observation("fhir-bench-probe", &patients[0], now, 50.0 + probe as f64);
        let (status, answer) = exchange(
            &mut stream,
            addr,
            token,
            "POST",
            "/fhir/Observation",
            Some(&body),
        )
        .await?;
        anyhow::ensure!(status == 201, "a probe was answered {status}");
        let posted = Instant::now();
        let id = answer["id"].as_str().context("a probe's id")?.to_owned();
        loop {
            let (_, found) = exchange(
                &mut stream,
                addr,
                token,
                "GET",
                &format!("/fhir/Observation?_id={id}"),
                None,
            )
            .await?;
            if found["total"] == 1 {
                break;
            }
            anyhow::ensure!(
                posted.elapsed() < Duration::from_secs(30),
                "a posted value was not found by search within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        visible_ms.push(posted.elapsed().as_secs_f64() * 1000.0);
    }
    visible_ms.sort_by(f64::total_cmp);

    let end = Instant::now() + Duration::from_secs(5);
    let mut workers = Vec::new();
    for connection in 0..connections {
        let patient = patients[connection % patients.len()].clone();
        let token = token.clone();
        let mut stream = connect().await?;
        workers.push(tokio::spawn(async move {
            let path = format!(
                "/fhir/Observation?patient={patient}&code=http://loinc.org%7C8867-4&_sort=-date&_count=50"
            );
            let mut latencies = Vec::new();
            while Instant::now() < end {
                let started = Instant::now();
                let (status, _) = exchange(&mut stream, addr, &token, "GET", &path, None).await?;
                anyhow::ensure!(status == 200, "a search was answered {status}");
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut search_ms = Vec::new();
    for worker in workers {
        search_ms.extend(worker.await??);
    }
    search_ms.sort_by(f64::total_cmp);
    let quantile = |sorted: &[f64], q: f64| crate::bench::quantile(sorted, q);
    Ok(json!({
        "visible_ms": {"n": visible_ms.len(), "p50": quantile(&visible_ms, 0.5), "max": visible_ms.last()},
        "searches_per_s": search_ms.len() as f64 / 5.0,
        "search_ms": {"n": search_ms.len(), "p50": quantile(&search_ms, 0.5), "p99": quantile(&search_ms, 0.99)},
    }))
}

/// One request on a keep-alive connection; the status and the JSON body (Null if none).
async fn exchange(
    stream: &mut BufReader<TcpStream>,
    addr: std::net::SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(request.as_bytes()).await?;
    let (status, body) = read_response_body(stream).await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status.
async fn read_response(stream: &mut BufReader<TcpStream>) -> anyhow::Result<u16> {
    Ok(read_response_body(stream).await?.0)
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status and body.
async fn read_response_body(stream: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, Vec<u8>)> {
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
    Ok((status, body))
}
