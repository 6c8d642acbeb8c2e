//! The metaward server: the sources that devices speak to, the ingest pipeline into the
//! durable log, the live twin and its subscribers, the SQL store that follows the log, and the
//! HTTP edge (REST, live stream, OpenAPI, metrics, the web page).
//!
//! Boundary: only this crate knows wire formats (MQTT payload JSON, WebSocket JSON, the log
//! record encoding); the crates below it speak the core model.

pub mod api;
pub mod auth;
pub mod directory;
pub mod emr_patient;
pub mod hub;
pub mod metrics;
pub mod pipeline;
pub mod projector;
pub mod record;
pub mod record_ward;
pub mod setup;
pub mod sinks;
pub mod sources;
pub mod tls;
pub mod ward;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
pub use clinical::News2Config;
pub use clinical::alarms::AlarmConfig;
use durable_log::{Log, LogConfig};
use model::Catalog;
use store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
pub use twin::DeviceHealthConfig;

use crate::api::{ApiError, AppState};
use crate::metrics::Metrics;
use crate::pipeline::Ingest;
use crate::ward::Ward;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    pub data_dir: PathBuf,
    /// When a silent device counts as offline, and the window its message rate is taken over.
    pub devices: DeviceHealthConfig,
    /// Alarm limits, delays and the lifecycle's timings (defaults: the clinical crate's
    /// `data/alarm_limits.toml`).
    pub alarms: AlarmConfig,
    /// NEWS2 freshness windows per parameter.
    pub news2: News2Config,
    /// Who may connect to the embedded broker (`mqtt.device_auth`).
    pub mqtt_device_auth: sources::mqtt::DeviceAuth,
    /// Also take device data from an external broker (`[mqtt.external]`).
    pub mqtt_external: Option<sources::mqtt::ExternalBrokerConfig>,
    /// HL7 v2 over MLLP (IHE PCD-01 ORU^R01, ADT).
    pub mllp: SocketAddr,
    /// Write-back of device vitals to an external EMR (`[emr]` with `push = true`).
    pub emr_push: Option<sinks::fhir_push::FhirPushConfig>,
    /// Polling an external EMR for admitted patients' record changes (`[emr]` with
    /// `pull_interval_secs`).
    pub emr_pull: Option<sources::fhir_pull::FhirPullConfig>,
    /// HTTPS instead of HTTP on the `http` address, with this certificate and key.
    pub tls: Option<tls::TlsFiles>,
    /// MQTT over TLS on the `mqtt` address, with this certificate and key.
    pub mqtt_tls: Option<tls::TlsFiles>,
    /// HL7 MLLP over TLS on the `mllp` address, with this certificate and key.
    pub mllp_tls: Option<tls::TlsFiles>,
    /// Single sign-on through an OpenID Connect provider (`[auth.oidc]`).
    pub oidc: Option<auth::oidc::OidcConfig>,
    /// Which MLLP peers may connect: an address allow-list, client certificates over TLS.
    pub mllp_access: sources::hl7_mllp::MllpAccess,
}

impl ServerConfig {
    /// Every listener on an ephemeral loopback port and default settings: for tests and
    /// benchmarks, so that two instances never collide.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> ServerConfig {
        let any_port: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        ServerConfig {
            http: any_port,
            mqtt: any_port,
            mllp: any_port,
            data_dir: data_dir.into(),
            devices: DeviceHealthConfig::default(),
            alarms: AlarmConfig::default(),
            news2: News2Config::default(),
            mqtt_device_auth: Default::default(),
            mqtt_external: None,
            emr_push: None,
            emr_pull: None,
            tls: None,
            mqtt_tls: None,
            mllp_tls: None,
            oidc: None,
            mllp_access: Default::default(),
        }
    }
}

/// Two connections to the SQL store: one that writes (the projector, registry changes) and one
/// for API reads, so a long history query never waits behind a projection batch (SQLite WAL).
#[derive(Clone)]
pub struct Stores {
    reader: Arc<Mutex<Store>>,
    writer: Arc<Mutex<Store>>,
    /// The database file, for analysts' read-only SQL on connections of their own.
    path: PathBuf,
}

impl Stores {
    /// Analysts' SQL: one read-only statement on a connection of its own, on the blocking pool.
    pub async fn query_read_only(
        &self,
        sql: String,
        limits: store::analytics::SqlLimits,
        wards: Option<Vec<String>>,
    ) -> Result<Result<store::analytics::SqlResult, store::analytics::SqlError>, ApiError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            store::analytics::query_read_only_in(&path, &sql, limits, wards.as_deref())
        })
        .await
        .map_err(ApiError::internal)
    }

    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.reader.clone();
        tokio::task::spawn_blocking(move || read(&store.lock().expect("store lock")))
            .await
            .map_err(ApiError::internal)
    }

    pub async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.writer.clone();
        tokio::task::spawn_blocking(move || write(&mut store.lock().expect("store lock")))
            .await
            .map_err(ApiError::internal)
    }
}

pub struct Server {
    http_addr: SocketAddr,
    mqtt_addr: SocketAddr,
    mllp_addr: SocketAddr,
    ward: Arc<Ward>,
    stores: Stores,
    log: Log,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    broker: mqtt_broker::BrokerHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Opens the data directory, replays the log into the store and the twin, and starts
    /// listening. Returns once every listener is bound.
    pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let metrics = Arc::new(Metrics::default());
        let log_dir = config.data_dir.join("log");
        let (log, recovery) =
            tokio::task::spawn_blocking(move || Log::open(LogConfig::new(log_dir)))
                .await?
                .context("opening the durable log")?;
        if recovery.truncated_bytes > 0 {
            tracing::warn!(bytes = recovery.truncated_bytes, reason = ?recovery.truncated_reason, "cut a torn tail off the log (unacknowledged writes)");
        }
        let store_path = config.data_dir.join("metaward.sqlite");
        let writer = Arc::new(Mutex::new(
            Store::open(&store_path).context("opening the SQL store")?,
        ));
        let reader = Arc::new(Mutex::new(
            Store::open(&store_path).context("opening the SQL store")?,
        ));
        let stores = Stores {
            reader,
            writer,
            path: store_path,
        };

        // Catch the store up with the log, then rebuild the twin from it.
        let replayed = {
            let (log, store, metrics) = (log.clone(), stores.writer.clone(), metrics.clone());
            tokio::task::spawn_blocking(move || projector::catch_up(&log, &store, &metrics))
                .await??
        };
        let ward = Arc::new(setup::load_ward(
            Catalog::embedded(),
            &stores.writer.lock().expect("store lock"),
            config.devices.clone(),
            config.alarms.clone(),
            config.news2.clone(),
        )?);
        tracing::info!(
            records = recovery.records_recovered,
            replayed,
            "recovered from the log"
        );

        let shutdown = CancellationToken::new();
        let appended = Arc::new(Notify::new());
        let ingest = Ingest::new(log.clone(), ward.clone(), metrics.clone(), appended.clone());
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(projector::run(
            log.clone(),
            stores.writer.clone(),
            metrics.clone(),
            appended,
            shutdown.clone(),
        )));

        let (recorder, writes) = tokio::sync::mpsc::unbounded_channel();
        ward.connect_recorder(recorder);
        tasks.push(tokio::spawn(record_clinical(
            writes,
            stores.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(watch_device_silence(
            ward.clone(),
            shutdown.clone(),
        )));

        let credentials = Arc::new(sources::mqtt::DeviceCredentials::new(
            stores
                .reader
                .lock()
                .expect("store lock")
                .device_credentials()
                .context("loading device credentials")?,
        ));
        if let Some(push) = config.emr_push.clone() {
            tasks.push(tokio::spawn(sinks::fhir_push::run(
                push,
                log.clone(),
                stores.writer.clone(),
                Catalog::embedded(),
                ingest.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(pull) = config.emr_pull.clone() {
            tasks.push(tokio::spawn(sources::fhir_pull::run(
                pull,
                stores.clone(),
                ingest.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(external) = config.mqtt_external.clone() {
            tasks.push(sources::mqtt::external::spawn(
                external,
                ingest.clone(),
                shutdown.clone(),
            )?);
        }
        let mqtt_tls = match &config.mqtt_tls {
            Some(files) => Some(tls::acceptor(files)?),
            None => None,
        };
        let broker = mqtt_broker::Broker::bind_tls(
            config.mqtt,
            mqtt_broker::BrokerConfig::default(),
            sources::mqtt::MqttSource::new(
                ingest.clone(),
                credentials.clone(),
                config.mqtt_device_auth,
            ),
            mqtt_tls,
        )
        .await
        .with_context(|| format!("binding MQTT on {}", config.mqtt))?;
        let mqtt_addr = broker.local_addr();

        anyhow::ensure!(
            config.mllp_access.facilities.is_empty() || config.mllp_access.client_ca.is_some(),
            "mllp_access.facilities maps client certificates: it needs client_ca (and MLLP over TLS)"
        );
        // The audit writer starts before the listeners, which record refused peers in it.
        let audit_shutdown = CancellationToken::new();
        let (audit, audit_task) = auth::Audit::start(stores.clone(), audit_shutdown.clone());
        let mllp = sources::hl7_mllp::MllpListener::start(
            config.mllp,
            sources::hl7_mllp::MllpConfig {
                tls: match (&config.mllp_tls, &config.mllp_access.client_ca) {
                    (Some(files), Some(ca)) => Some(tls::acceptor_verifying_clients(files, ca)?),
                    (Some(files), None) => Some(tls::acceptor(files)?),
                    (None, Some(_)) => anyhow::bail!(
                        "mllp client certificates need MLLP over TLS (mllp_tls and a [tls] certificate)"
                    ),
                    (None, None) => None,
                },
                access: config.mllp_access.clone(),
                audit: Some(audit.clone()),
                ..sources::hl7_mllp::MllpConfig::default()
            },
            ingest.clone(),
            stores.clone(),
            shutdown.clone(),
        )
        .await?;
        let mllp_addr = mllp.local_addr;
        tasks.push(mllp.task);

        let listener = tokio::net::TcpListener::bind(config.http)
            .await
            .with_context(|| format!("binding HTTP on {}", config.http))?;
        let http_addr = listener.local_addr()?;
        let app = {
            let (ward, stores, metrics, log) =
                (ward.clone(), stores.clone(), metrics.clone(), log.clone());
            move |auth: Arc<auth::Auth>| {
                api::router(AppState {
                    ward,
                    stores,
                    metrics,
                    log,
                    credentials,
                    ingest,
                    presence: Default::default(),
                    auth,
                })
            }
        };
        let oidc = config
            .oidc
            .clone()
            .map(auth::oidc::Oidc::new)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        // Sessions are kept in the store (hashes only), so a restart signs nobody out.
        let sessions = auth::Sessions::persistent(
            Store::open(&stores.path).context("opening the SQL store")?,
            pipeline::now().millis(),
        )
        .context("loading sessions")?;
        let auth = auth::Auth::with_sessions_and_oidc(audit, sessions, oidc);
        let app = app(auth);
        let http_shutdown = shutdown.clone();
        let (tls, plain) = match &config.tls {
            Some(files) => (
                Some(tls::TlsListener::new(
                    listener,
                    tls::server_config(files)?,
                    shutdown.clone(),
                )?),
                None,
            ),
            None => (None, Some(listener)),
        };
        tasks.push(tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<tls::PeerAddr>();
            let stop = http_shutdown.cancelled_owned();
            let served = match (tls, plain) {
                (Some(tls), _) => axum::serve(tls, service).with_graceful_shutdown(stop).await,
                (None, Some(plain)) => {
                    axum::serve(plain, service)
                        .with_graceful_shutdown(stop)
                        .await
                }
                (None, None) => unreachable!("one of the two listeners"),
            };
            if let Err(error) = served {
                tracing::error!(%error, "http server stopped");
            }
            // The audit writer stops after the HTTP server, so the last requests are recorded.
            audit_shutdown.cancel();
            let _ = audit_task.await;
        }));
        tracing::info!(http = %http_addr, mqtt = %mqtt_addr, mllp = %mllp_addr, "metaward is listening");
        Ok(Server {
            http_addr,
            mqtt_addr,
            mllp_addr,
            ward,
            stores,
            log,
            shutdown,
            metrics,
            broker,
            tasks,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    pub fn mllp_addr(&self) -> SocketAddr {
        self.mllp_addr
    }

    pub fn ward(&self) -> &Arc<Ward> {
        &self.ward
    }

    /// The Prometheus text, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Stops listening, lets in-flight work finish, and closes the log.
    pub async fn shutdown(self) {
        self.broker.shutdown().await;
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let log = self.log;
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
}

/// Lets the devices' technical state see time pass, so a device that stops sending is marked
/// offline within a second of its silence limit.
async fn watch_device_silence(ward: Arc<Ward>, shutdown: CancellationToken) {
    let mut every_second = tokio::time::interval(std::time::Duration::from_secs(1));
    every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every_second.tick() => ward.tick(pipeline::now()),
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Stores alarm events and changed scores in the order they happened, a batch per wake-up,
/// and tells whoever waits (an acknowledgment over REST) that they are on disk. Drains what is
/// queued at shutdown.
async fn record_clinical(
    mut writes: tokio::sync::mpsc::UnboundedReceiver<ward::ClinicalWrite>,
    stores: Stores,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            write = writes.recv() => match write {
                Some(write) => write,
                None => return,
            },
            _ = shutdown.cancelled() => match writes.try_recv() {
                Ok(write) => write,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        while let Ok(write) = writes.try_recv() {
            batch.push(write);
        }
        let events: Vec<_> = batch
            .iter()
            .flat_map(|write| write.alarm_events.iter().cloned())
            .collect();
        let scores: Vec<_> = batch
            .iter()
            .flat_map(|write| write.scores.iter().cloned())
            .collect();
        let stored = stores
            .write(move |store| {
                store.record_alarm_events(&events)?;
                store.record_news2(&scores)?;
                record_news2_in_fhir(store, &scores);
                Ok::<(), store::StoreError>(())
            })
            .await;
        let ok = matches!(stored, Ok(Ok(())));
        if !ok {
            tracing::error!("storing alarms or scores failed; they remain live but are not kept");
        }
        for write in batch {
            if let Some(durable) = write.durable {
                let _ = durable.send(ok);
            }
        }
    }
}

/// Each changed score becomes the new version of the patient's NEWS2 Observation in the FHIR
/// record (`api::fhir_record::news2`). The score history table is the truth; a FHIR write that
/// fails is logged and the next change writes the current score again.
fn record_news2_in_fhir(store: &mut Store, scores: &[(model::PatientId, clinical::News2Result)]) {
    use api::fhir_record::news2;
    for (patient, result) in scores {
        let Some(id) = news2::observation_id(patient) else {
            continue;
        };
        let resource = news2::observation(patient, result, &id);
        let written = store.fhir_write_resource(
            Some(&id),
            &resource,
            None,
            None,
            result.at.millis(),
            &mut store::fhir_record::new_resource_id,
        );
        if let Err(error) = written {
            tracing::warn!(%error, "a NEWS2 score was not written to the FHIR record");
        }
    }
}

impl Server {
    /// Creates a user with a generated password and returns it (to be shown once): for the
    /// demo's users and for tests. `wards`: `None` for every ward.
    pub async fn create_user(
        &self,
        name: &str,
        role: &str,
        wards: Option<Vec<String>>,
    ) -> anyhow::Result<String> {
        let (name, role) = (name.to_owned(), role.to_owned());
        let created = self
            .stores
            .write(move |store| {
                auth::create_user(
                    store,
                    &name,
                    &role,
                    wards.as_deref(),
                    pipeline::now().millis(),
                )
            })
            .await
            .map_err(|error| anyhow::anyhow!(error.message))??;
        Ok(created)
    }

    /// How many users exist (none on a first run).
    pub async fn user_count(&self) -> anyhow::Result<u64> {
        Ok(self
            .stores
            .read(|store| store.user_count())
            .await
            .map_err(|error| anyhow::anyhow!(error.message))??)
    }

    /// Writes a ward setup into the store and reloads the live views from it.
    pub async fn apply_setup(&self, ward_setup: setup::WardSetup) -> anyhow::Result<()> {
        let ward = self.ward.clone();
        self.stores
            .write(move |store| -> Result<(), store::StoreError> {
                setup::apply(store, &ward_setup, pipeline::now())?;
                setup::reload(&ward, store)
            })
            .await
            .map_err(|error| anyhow::anyhow!(error.message))??;
        Ok(())
    }
}
