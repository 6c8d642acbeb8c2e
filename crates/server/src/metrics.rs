//! Prometheus metrics: a counter for every accept, reject and drop, with the reason as a label.
//! One registry per server (not a process-global one), so servers started side by side in
//! tests keep their own counts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub source: String,
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    /// Every message a source received, whatever became of it: received = accepted + rejected.
    pub messages_received: Family<SourceLabel, Counter>,
    pub messages_accepted: Family<SourceLabel, Counter>,
    pub messages_rejected: Family<RejectLabels, Counter>,
    pub observations_accepted: Family<SourceLabel, Counter>,
    /// Samples accepted: one per numeric, one per waveform sample.
    pub samples_accepted: Family<SourceLabel, Counter>,
    /// Values inside accepted messages that were not stored (an HL7 OBX whose code is not in
    /// the catalog), by source and reason: the sender is told, and so is the operator.
    pub observations_not_stored: Family<RejectLabels, Counter>,
    /// Numeric updates a slow stream client got as a newer value instead.
    pub stream_values_coalesced: Counter,
    /// Waveform chunks a slow stream client skipped.
    pub stream_waveforms_dropped: Counter,
    pub stream_clients: Gauge,
    pub log_records: Gauge,
    pub log_syncs: Gauge,
    pub store_observations_written: Counter,
    pub store_checkpoint: Gauge,
    /// Observations the EMR write-back delivered, and its failed attempts (retried).
    pub emr_observations_pushed: Counter,
    pub emr_push_failures: Counter,
    /// Connections closed before any message: a peer not allowed, a failed TLS handshake.
    pub connections_refused: Family<RejectLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("metaward"),
            messages_received: Family::default(),
            messages_accepted: Family::default(),
            messages_rejected: Family::default(),
            observations_accepted: Family::default(),
            samples_accepted: Family::default(),
            observations_not_stored: Family::default(),
            stream_values_coalesced: Counter::default(),
            stream_waveforms_dropped: Counter::default(),
            stream_clients: Gauge::default(),
            log_records: Gauge::default(),
            log_syncs: Gauge::default(),
            store_observations_written: Counter::default(),
            store_checkpoint: Gauge::default(),
            emr_observations_pushed: Counter::default(),
            emr_push_failures: Counter::default(),
            connections_refused: Family::default(),
        };
        let r = &mut metrics.registry;
        r.register(
            "messages_received",
            "Messages received from devices, by source",
            metrics.messages_received.clone(),
        );
        r.register(
            "messages_accepted",
            "Messages accepted and durable, by source",
            metrics.messages_accepted.clone(),
        );
        r.register(
            "messages_rejected",
            "Messages rejected, by source and reason",
            metrics.messages_rejected.clone(),
        );
        r.register(
            "observations_accepted",
            "Observations accepted and durable, by source",
            metrics.observations_accepted.clone(),
        );
        r.register(
            "samples_accepted",
            "Samples accepted and durable (one per numeric, one per waveform sample), by source",
            metrics.samples_accepted.clone(),
        );
        r.register(
            "observations_not_stored",
            "Values in accepted messages that were not stored, by source and reason",
            metrics.observations_not_stored.clone(),
        );
        r.register(
            "stream_values_coalesced",
            "Numeric updates replaced by a newer value for a slow stream client",
            metrics.stream_values_coalesced.clone(),
        );
        r.register(
            "stream_waveforms_dropped",
            "Waveform chunks skipped for a slow stream client",
            metrics.stream_waveforms_dropped.clone(),
        );
        r.register(
            "stream_clients",
            "Connected live-stream clients",
            metrics.stream_clients.clone(),
        );
        r.register(
            "log_records",
            "Records appended to the durable log since start",
            metrics.log_records.clone(),
        );
        r.register(
            "log_syncs",
            "fsyncs of the durable log since start (group commit)",
            metrics.log_syncs.clone(),
        );
        r.register(
            "store_observations_written",
            "Observations projected into the SQL store",
            metrics.store_observations_written.clone(),
        );
        r.register(
            "store_checkpoint",
            "Last log offset projected into the SQL store",
            metrics.store_checkpoint.clone(),
        );
        r.register(
            "emr_observations_pushed",
            "Device observations delivered to the external EMR (docs/emr.md)",
            metrics.emr_observations_pushed.clone(),
        );
        r.register(
            "emr_push_failures",
            "Failed attempts to deliver a batch to the external EMR (each retried)",
            metrics.emr_push_failures.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed before any message (peer not allowed, TLS handshake failed), by source and reason",
            metrics.connections_refused.clone(),
        );
        metrics
    }
}

impl Metrics {
    pub fn emr_pushed(&self, observations: usize) {
        self.emr_observations_pushed.inc_by(observations as u64);
    }

    pub fn emr_push_failed(&self) {
        self.emr_push_failures.inc();
    }

    pub fn received(&self, source: &str) {
        self.messages_received
            .get_or_create(&SourceLabel {
                source: source.into(),
            })
            .inc();
    }

    pub fn accepted(&self, source: &str, observations: usize, samples: usize) {
        let label = SourceLabel {
            source: source.into(),
        };
        self.messages_accepted.get_or_create(&label).inc();
        self.observations_accepted
            .get_or_create(&label)
            .inc_by(observations as u64);
        self.samples_accepted
            .get_or_create(&label)
            .inc_by(samples as u64);
    }

    pub fn rejected(&self, source: &str, reason: &str) {
        self.messages_rejected
            .get_or_create(&RejectLabels {
                source: source.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn connection_refused(&self, source: &str, reason: &str) {
        self.connections_refused
            .get_or_create(&RejectLabels {
                source: source.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn not_stored(&self, source: &str, reason: &str, count: usize) {
        self.observations_not_stored
            .get_or_create(&RejectLabels {
                source: source.into(),
                reason: reason.into(),
            })
            .inc_by(count as u64);
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a string cannot fail");
        text
    }
}
