//! Devices through an external MQTT broker (mosquitto, EMQX, HiveMQ, ...): metaward connects as
//! an MQTT 5 client and subscribes to the device topics, through a shared subscription
//! (`$share/<group>/metaward/v1/devices/+/obs`) so several metaward nodes split the load, each
//! message going to one of them.
//!
//! QoS 1 end to end: acknowledgements are manual, and the PUBACK to the broker is sent only
//! after the message is durable in our log (or kept as a dead letter), in the order the
//! messages arrived (MQTT 5 §4.6). The session is persistent (clean start false, a session
//! expiry), so what this node received but had not acknowledged when it stopped or crashed is
//! redelivered by the broker when it comes back. The handling of each message is the embedded
//! broker's (`source::handle_device_publish`): one handling function, two transports.
//!
//! Who may publish on which topic is the broker's job here (its ACL, e.g. mosquitto's
//! `pattern write metaward/v1/devices/%u/obs`); we still refuse a SenML pack whose name claims
//! another device than its topic.

use std::time::Duration;

use mqtt_broker::{IncomingPublish, PublishOutcome, QoS};
use rumqttc::v5::mqttbytes::QoS as ClientQoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::source::handle_device_publish;
use crate::pipeline::Ingest;

const SOURCE: &str = "mqtt_external";

/// How many messages may be between the broker and our PUBACK at once (announced to the
/// broker as our receive maximum, so it never sends more).
const MAX_INFLIGHT: u16 = 64;

/// The `[mqtt.external]` section of the configuration. `Debug` leaves the password out.
#[derive(Clone, PartialEq)]
pub struct ExternalBrokerConfig {
    /// `host:port` of the broker.
    pub broker: String,
    /// This node's client id. Must be stable across restarts (the broker keeps the session
    /// under it) and different on every node.
    pub client_id: String,
    /// Shared-subscription group: nodes in one group split the messages. `None` subscribes
    /// plainly (every node gets every message).
    pub share_group: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The device topics to take, default `metaward/v1/devices/+/obs`.
    pub topic_filter: String,
    /// How long the broker keeps this node's session (and queues its messages) while it is away.
    pub session_expiry: Duration,
}

impl std::fmt::Debug for ExternalBrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalBrokerConfig")
            .field("broker", &self.broker)
            .field("client_id", &self.client_id)
            .field("share_group", &self.share_group)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("topic_filter", &self.topic_filter)
            .field("session_expiry", &self.session_expiry)
            .finish()
    }
}

impl ExternalBrokerConfig {
    pub const DEFAULT_TOPIC_FILTER: &str = "metaward/v1/devices/+/obs";
    pub const DEFAULT_SESSION_EXPIRY: Duration = Duration::from_secs(24 * 3600);

    /// The filter subscribed to: `$share/<group>/<topic_filter>` or the plain filter.
    pub fn subscription(&self) -> String {
        match &self.share_group {
            Some(group) => format!("$share/{group}/{}", self.topic_filter),
            None => self.topic_filter.clone(),
        }
    }

    fn host_and_port(&self) -> anyhow::Result<(String, u16)> {
        let (host, port) = self.broker.rsplit_once(':').ok_or_else(|| {
            anyhow::anyhow!(
                "external broker `{}` is not host:port (e.g. 127.0.0.1:1883)",
                self.broker
            )
        })?;
        let port = port
            .parse()
            .map_err(|_| anyhow::anyhow!("external broker `{}` has no valid port", self.broker))?;
        Ok((host.trim_matches(['[', ']']).to_owned(), port))
    }
}

/// Starts the client; it reconnects on its own until `shutdown`.
pub fn spawn(
    config: ExternalBrokerConfig,
    ingest: Ingest,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let (host, port) = config.host_and_port()?;
    let mut options = MqttOptions::new(config.client_id.clone(), host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_start(false)
        .set_session_expiry_interval(Some(
            u32::try_from(config.session_expiry.as_secs()).unwrap_or(u32::MAX),
        ))
        .set_receive_maximum(Some(MAX_INFLIGHT))
        .set_manual_acks(true)
        .set_max_packet_size(Some(1024 * 1024));
    if let Some(username) = &config.username {
        options.set_credentials(
            username.clone(),
            config.password.clone().unwrap_or_default(),
        );
    }
    let (client, eventloop) = AsyncClient::new(options, usize::from(MAX_INFLIGHT) * 2);
    Ok(tokio::spawn(run(
        config, ingest, client, eventloop, shutdown,
    )))
}

async fn run(
    config: ExternalBrokerConfig,
    ingest: Ingest,
    client: AsyncClient,
    mut eventloop: EventLoop,
    shutdown: CancellationToken,
) {
    let subscription = config.subscription();
    // Handling runs concurrently (so the log's group commit sees batches), acknowledgements
    // leave in arrival order: the acker awaits each message's handling in turn.
    let (handled, mut to_ack) =
        mpsc::channel::<(Publish, JoinHandle<PublishOutcome>)>(usize::from(MAX_INFLIGHT));
    let acker = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some((publish, handling)) = to_ack.recv().await {
                let outcome = handling.await.unwrap_or(PublishOutcome::rejected(
                    mqtt_broker::PublishReason::UnspecifiedError,
                ));
                if outcome.kept {
                    if let Err(error) = client.ack(&publish).await {
                        tracing::warn!(%error, "could not queue a PUBACK to the external broker");
                    }
                } else {
                    // Not durable: no PUBACK, so the broker redelivers it once we reconnect.
                    tracing::error!(
                        "an external broker message was not made durable and stays unacknowledged"
                    );
                }
            }
        })
    };
    let mut failures = 0u32;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                failures = 0;
                tracing::info!(broker = %config.broker, session_present = connack.session_present, "connected to the external mqtt broker");
                // Subscribing again on a kept session is harmless and covers an expired one.
                if let Err(error) = client
                    .subscribe(subscription.clone(), ClientQoS::AtLeastOnce)
                    .await
                {
                    tracing::error!(%error, "could not subscribe at the external broker");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(suback))) => {
                for code in &suback.return_codes {
                    if !matches!(code, SubscribeReasonCode::Success(_)) {
                        tracing::error!(filter = %subscription, reason = ?code, "the external broker refused the subscription");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let incoming = incoming_of(&publish);
                let ingest = ingest.clone();
                let handling = tokio::spawn(async move {
                    handle_device_publish(&ingest, SOURCE, incoming, |_| Ok(())).await
                });
                if handled.send((publish, handling)).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(broker = %config.broker, %error, "external mqtt broker connection failed; retrying");
                // rumqttc reconnects on the next poll; back off up to 5 s.
                let backoff = Duration::from_millis(200 * u64::from(failures.min(25)));
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
    // Let handled messages be acknowledged, keep the connection polled so the PUBACKs leave,
    // then disconnect. Messages that arrive meanwhile stay unacknowledged: the broker keeps
    // them in our session for the next start.
    drop(handled);
    let flush = async {
        let mut acker = acker;
        loop {
            tokio::select! {
                _ = &mut acker => break,
                event = eventloop.poll() => if event.is_err() { break },
            }
        }
        let _ = client.disconnect().await;
        while let Ok(event) = eventloop.poll().await {
            if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), flush).await;
}

fn incoming_of(publish: &Publish) -> IncomingPublish {
    let properties = publish.properties.as_ref();
    IncomingPublish {
        topic: String::from_utf8_lossy(&publish.topic).into_owned(),
        payload: publish.payload.clone(),
        qos: match publish.qos {
            ClientQoS::AtMostOnce => QoS::AtMostOnce,
            ClientQoS::AtLeastOnce => QoS::AtLeastOnce,
            ClientQoS::ExactlyOnce => QoS::ExactlyOnce,
        },
        retain: publish.retain,
        dup: publish.dup,
        payload_format_utf8: properties.and_then(|p| p.payload_format_indicator) == Some(1),
        content_type: properties.and_then(|p| p.content_type.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_subscription_filter() {
        let mut config = ExternalBrokerConfig {
            broker: "[::1]:1883".into(),
            client_id: "node-a".into(),
            share_group: Some("metaward".into()),
            username: None,
            password: None,
            topic_filter: ExternalBrokerConfig::DEFAULT_TOPIC_FILTER.into(),
            session_expiry: ExternalBrokerConfig::DEFAULT_SESSION_EXPIRY,
        };
        assert_eq!(
            config.subscription(),
            "$share/metaward/metaward/v1/devices/+/obs"
        );
        assert_eq!(config.host_and_port().unwrap(), ("::1".into(), 1883));
        config.password = Some("hunter2".into());
        assert!(!format!("{config:?}").contains("hunter2"));
        config.share_group = None;
        assert_eq!(config.subscription(), "metaward/v1/devices/+/obs");
        config.broker = "nohost".into();
        assert!(config.host_and_port().is_err());
    }
}
