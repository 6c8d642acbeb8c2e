//! `metaward`: one binary that wires the crates together.
//!
//! - `serve`: the server, waiting for real devices.
//! - `demo`: the server plus a simulated ward publishing over the real MQTT socket.
//! - `bench`: drives simulated beds through the real sockets and prints throughput, latency
//!   and memory (or, with `--import DIR`, the medical record's import rate).
//! - `import`: loads FHIR R4 Bundles and resources into the medical record.
//! - `score`: NEWS2 for vitals and record context given as JSON, for checking by hand.
//! - `test-rules`: replays rules files (timelines with expected scores) and reports differences.
//! - `sql`: analysts' read-only SQL over a data directory's store.
//! - `user`: create, list, disable, enable and reset users; `audit`: verify and export the trail.
//! - `token`: create, list, rotate and revoke API tokens (device and service).

mod bench;
mod bench_fhir;
mod config;
mod demo;
mod import;
mod rules;
mod score;
mod sql;
mod token;
mod user;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::ListenArgs;

#[derive(Parser)]
#[command(
    name = "metaward",
    version,
    about = "A real-time clinical digital twin of hospital wards"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server for real devices
    Serve {
        #[command(flatten)]
        listen: ListenArgs,
    },
    /// Run the server with a simulated ward feeding it over MQTT
    Demo {
        #[command(flatten)]
        listen: ListenArgs,
        /// Number of simulated beds
        #[arg(long, default_value_t = 12, env = "METAWARD_DEMO_BEDS")]
        beds: usize,
        /// Seed of the simulation: the same seed gives the same ward
        #[arg(long, default_value_t = 1, env = "METAWARD_DEMO_SEED")]
        seed: u64,
        /// Serve HTTPS with a self-signed certificate written to DATA/tls (cert.pem, key.pem)
        #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
        tls_self_signed: bool,
    },
    /// Measure ingest throughput, end-to-end latency and memory
    Bench(bench::BenchArgs),
    /// Import FHIR R4 Bundles (transaction, batch, collection) and resources into the record
    Import(import::ImportArgs),
    /// Compute NEWS2 for vitals and record context given as JSON
    Score(score::ScoreArgs),
    /// Check rules files (timelines of vitals with expected scores)
    TestRules(rules::TestRulesArgs),
    /// Run one read-only SQL query over the store (docs/sql.md)
    Sql(sql::SqlArgs),
    /// Manage users: create (first admin: `user create NAME --admin`), list, disable, reset
    User(user::UserArgs),
    /// Check the audit trail's hash chain, or export it as FHIR AuditEvents
    Audit(user::AuditArgs),
    /// Manage API tokens: device tokens for FHIR posting, service tokens for integrations
    Token(token::TokenArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("METAWARD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // The clinical commands are plain computations: no runtime, no server.
    let command = match cli.command {
        Command::Score(args) => return score::run(args),
        Command::TestRules(args) => return rules::run(args),
        Command::Sql(args) => return sql::run(args),
        Command::User(args) => return user::run(args),
        Command::Audit(args) => return user::run_audit(args),
        Command::Token(args) => return token::run(args),
        command => command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match command {
            Command::Serve { listen } => serve(listen).await,
            Command::Demo {
                listen,
                beds,
                seed,
                tls_self_signed,
            } => run_demo(listen, beds, seed, tls_self_signed).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Import(args) => import::run(args).await,
            Command::Score(_)
            | Command::TestRules(_)
            | Command::Sql(_)
            | Command::User(_)
            | Command::Audit(_)
            | Command::Token(_) => {
                unreachable!("handled above")
            }
        }
    })
}

async fn serve(listen: ListenArgs) -> anyhow::Result<()> {
    let server = server::Server::start(listen.resolve()?).await?;
    if server.user_count().await? == 0 {
        // First run: no default account exists; say how to make the first one.
        eprintln!(
            "no users yet: create the first admin with `metaward user create NAME --admin --data DIR` (it prints a generated password once)"
        );
    }
    announce(&server);
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

async fn run_demo(
    listen: ListenArgs,
    beds: usize,
    seed: u64,
    tls_self_signed: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!((1..=500).contains(&beds), "--beds must be 1 to 500");
    let mut config = listen.resolve()?;
    if tls_self_signed {
        let files = server::tls::self_signed(&config.data_dir.join("tls"))?;
        println!(
            "metaward tls cert={} (self-signed for localhost, 127.0.0.1, ::1; e.g. curl --cacert it)",
            files.cert.display()
        );
        config.tls = Some(files);
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let server = server::Server::start(config).await?;
    let ward = demo::sim_ward(seed, beds, server::pipeline::now());
    server
        .apply_setup(demo::setup_of(&ward, "Ward A (simulated)"))
        .await?;
    demo::load_demo_record(&server, &ward).await?;
    demo::create_demo_users(&server).await?;
    announce(&server);
    let stop = CancellationToken::new();
    let publisher = tokio::spawn(sim::run_publisher(
        server.mqtt_addr(),
        ward,
        sim::PublisherOptions::default(),
        stop.clone(),
    ));
    println!(
        "simulating {beds} beds (seed {seed}); open {scheme}://{}/ in a browser; Ctrl-C stops",
        server.http_addr()
    );
    shutdown_signal().await;
    stop.cancel();
    match publisher.await? {
        Ok(stats) => tracing::info!(
            published = stats.published,
            acked = stats.acked,
            "simulator stopped"
        ),
        Err(error) => tracing::warn!(%error, "simulator stopped with an error"),
    }
    server.shutdown().await;
    Ok(())
}

/// One machine-readable line on stdout, so scripts and tests know where to connect.
fn announce(server: &server::Server) {
    println!(
        "metaward listening http={} mqtt={} mllp={}",
        server.http_addr(),
        server.mqtt_addr(),
        server.mllp_addr()
    );
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
