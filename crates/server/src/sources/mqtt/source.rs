use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{self, BoxFuture};
use model::DeviceId;
use mqtt_broker::{
    ClientInfo, ConnectRefusal, Handler, IncomingPublish, PublishOutcome, PublishReason,
};
use tokio::sync::Semaphore;

use super::credentials::{DeviceAuth, DeviceCredentials, verify_secret};
use super::{payload, senml};
use crate::pipeline::{Ingest, now};
use crate::record::DeadLetter;

pub const DEVICE_TOPIC_PREFIX: &str = "metaward/v1/devices/";
const SOURCE: &str = "mqtt";

/// One connection: its client id and its peer address (a take-over by the same client id
/// comes from another port, so it does not inherit what the old connection proved).
type ConnectionKey = (String, SocketAddr);

/// The embedded broker's handler: device credentials at CONNECT, the device's own topic at
/// PUBLISH, then the shared [`handle_device_publish`].
pub struct MqttSource {
    ingest: Ingest,
    credentials: Arc<DeviceCredentials>,
    policy: DeviceAuth,
    /// The credential hash each authenticated connection proved, so a rotation or revocation
    /// takes effect on the next PUBLISH of a connection already open.
    verified: Arc<Mutex<HashMap<ConnectionKey, Arc<str>>>>,
    /// Hash checks at once: each takes 8 MiB and a few milliseconds, so a flood of CONNECTs
    /// waits here instead of filling the blocking pool and memory.
    verifications: Arc<Semaphore>,
}

const CONCURRENT_VERIFICATIONS: usize = 4;

impl MqttSource {
    pub fn new(
        ingest: Ingest,
        credentials: Arc<DeviceCredentials>,
        policy: DeviceAuth,
    ) -> Arc<MqttSource> {
        Arc::new(MqttSource {
            ingest,
            credentials,
            policy,
            verified: Arc::default(),
            verifications: Arc::new(Semaphore::new(CONCURRENT_VERIFICATIONS)),
        })
    }

    fn connection_key(client: &ClientInfo) -> ConnectionKey {
        (client.client_id.clone(), client.peer_addr)
    }
}

/// `metaward/v1/devices/{device_id}/obs` → the device id, if the topic is a device topic.
pub fn device_of_topic(topic: &str) -> Option<&str> {
    let id = topic
        .strip_prefix(DEVICE_TOPIC_PREFIX)?
        .strip_suffix("/obs")?;
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    valid.then_some(id)
}

impl Handler for MqttSource {
    fn on_connect(&self, client: &ClientInfo) -> BoxFuture<'static, Result<(), ConnectRefusal>> {
        let (username, password) = (client.username.clone(), client.password.clone());
        let Some(username) = username else {
            let refused = password.is_some() || self.policy == DeviceAuth::Required;
            return future::ready(if refused {
                if password.is_some() {
                    Err(ConnectRefusal::BadUserNameOrPassword)
                } else {
                    Err(ConnectRefusal::NotAuthorized)
                }
            } else {
                Ok(())
            })
            .boxed();
        };
        // A username claims a device's identity: it must be a device with a credential.
        let hash = self.credentials.hash_of(&DeviceId::new(&username));
        let (Some(hash), Some(password)) = (hash, password) else {
            tracing::warn!(device = %username, "mqtt connect with unknown device or without password");
            return future::ready(Err(ConnectRefusal::BadUserNameOrPassword)).boxed();
        };
        let key = Self::connection_key(client);
        let verified = self.verified.clone();
        let verifications = self.verifications.clone();
        async move {
            let Ok(_permit) = verifications.acquire_owned().await else {
                return Err(ConnectRefusal::ServerUnavailable);
            };
            let checked = hash.clone();
            let matches = tokio::task::spawn_blocking(move || verify_secret(&password, &checked))
                .await
                .unwrap_or(false);
            if !matches {
                tracing::warn!(device = %username, "mqtt connect with a wrong device secret");
                return Err(ConnectRefusal::BadUserNameOrPassword);
            }
            verified.lock().expect("verified lock").insert(key, hash);
            Ok(())
        }
        .boxed()
    }

    fn on_publish(
        &self,
        client: &ClientInfo,
        publish: IncomingPublish,
    ) -> BoxFuture<'static, PublishOutcome> {
        let ingest = self.ingest.clone();
        let credentials = self.credentials.clone();
        let authenticated = client.username.as_ref().map(|username| {
            let proved = self
                .verified
                .lock()
                .expect("verified lock")
                .get(&Self::connection_key(client))
                .cloned();
            (DeviceId::new(username), proved)
        });
        let authorize = move |device_id: &DeviceId| -> Result<(), String> {
            match &authenticated {
                Some((username, proved)) => {
                    let current = credentials.hash_of(username);
                    if proved.is_none() || current.as_deref() != proved.as_deref() {
                        return Err(format!(
                            "the credential of device `{username}` was rotated or revoked after this connection authenticated"
                        ));
                    }
                    if username != device_id {
                        return Err(format!(
                            "device `{username}` may publish only to its own topic, not as device `{device_id}`"
                        ));
                    }
                    Ok(())
                }
                None if credentials.hash_of(device_id).is_some() => Err(format!(
                    "device `{device_id}` has a credential: connect with username `{device_id}` and its secret"
                )),
                None => Ok(()),
            }
        };
        // Run to completion even if the client disconnects meanwhile: once a message is on its
        // way into the log, the twin must see it too.
        let work = tokio::spawn(async move {
            handle_device_publish(&ingest, SOURCE, publish, authorize).await
        });
        async move {
            work.await
                .unwrap_or(PublishOutcome::rejected(PublishReason::UnspecifiedError))
        }
        .boxed()
    }

    fn on_disconnect(&self, client: &ClientInfo) {
        self.verified
            .lock()
            .expect("verified lock")
            .remove(&Self::connection_key(client));
    }
}

/// Where a device message came from, for metrics and dead letters: the embedded broker
/// (`mqtt`) or a client of an external broker (`mqtt_external`).
pub(crate) type SourceLabel = &'static str;

/// The one handling function of both transports: a PUBLISH on a device topic is authorized,
/// parsed (our JSON or SenML), made durable, and only then answered. Refused input is kept as
/// a dead letter first, so the answer always reflects what is on disk.
pub(crate) async fn handle_device_publish(
    ingest: &Ingest,
    source: SourceLabel,
    publish: IncomingPublish,
    authorize: impl FnOnce(&DeviceId) -> Result<(), String>,
) -> PublishOutcome {
    let received = now();
    // Topics outside the device namespace (a client's own chatter, subscriptions for
    // dashboards) are routed by the broker but are not device data.
    if !publish.topic.starts_with(DEVICE_TOPIC_PREFIX) {
        return PublishOutcome::accepted();
    }
    ingest.metrics().received(source);
    let dead_letter = |reason: &str, detail: String| DeadLetter {
        source: source.into(),
        origin: publish.topic.clone(),
        received_ms: received.millis(),
        reason: reason.into(),
        detail,
        raw: publish.payload.to_vec(),
    };
    let Some(device_id) = device_of_topic(&publish.topic) else {
        let dead = dead_letter(
            "topic",
            format!(
                "topic `{}` is not metaward/v1/devices/{{device_id}}/obs",
                publish.topic
            ),
        );
        return keep(ingest, dead, PublishReason::TopicNameInvalid).await;
    };
    let device_id = DeviceId::new(device_id);
    if let Err(detail) = authorize(&device_id) {
        tracing::warn!(device = %device_id, "refused a publish the connection may not make");
        let dead = dead_letter("not_authorized", detail);
        return keep(ingest, dead, PublishReason::NotAuthorized).await;
    }
    let catalog = ingest.ward().catalog;
    let payload_bytes = &publish.payload;
    let parsed = match payload_format(publish.content_type.as_deref(), payload_bytes) {
        Ok(PayloadFormat::Json) => payload::parse(catalog, &device_id, payload_bytes, received)
            .map_err(|error| {
                (
                    "payload",
                    error.to_string(),
                    PublishReason::PayloadFormatInvalid,
                )
            }),
        Ok(PayloadFormat::Senml) => senml::parse(catalog, &device_id, payload_bytes, received)
            .map_err(|error| {
                if error.names_another_device() {
                    (
                        "not_authorized",
                        error.to_string(),
                        PublishReason::NotAuthorized,
                    )
                } else {
                    (
                        "payload",
                        error.to_string(),
                        PublishReason::PayloadFormatInvalid,
                    )
                }
            }),
        Err(detail) => Err(("payload", detail, PublishReason::PayloadFormatInvalid)),
    };
    match parsed {
        Ok(observations) => match ingest
            .accept(source, device_id, observations, received, None)
            .await
        {
            Ok(_) => PublishOutcome::accepted(),
            Err(error) => {
                tracing::error!(%error, "could not make a device message durable");
                PublishOutcome::rejected(PublishReason::UnspecifiedError)
            }
        },
        Err((reason, detail, code)) => {
            tracing::warn!(device = %device_id, error = %detail, "rejected device payload");
            keep(ingest, dead_letter(reason, detail), code).await
        }
    }
}

async fn keep(ingest: &Ingest, dead: DeadLetter, reason: PublishReason) -> PublishOutcome {
    match ingest.dead_letter(dead).await {
        Ok(_) => PublishOutcome::kept_with(reason),
        Err(error) => {
            tracing::error!(%error, "could not keep a rejected device message");
            PublishOutcome::rejected(reason)
        }
    }
}

#[cfg(test)]
pub(super) fn payload_format_for_fuzz(content_type: Option<&str>, payload: &[u8]) -> bool {
    payload_format(content_type, payload).is_ok()
}

#[derive(Debug, PartialEq, Eq)]
enum PayloadFormat {
    /// Our payload (docs/mqtt.md): a JSON object.
    Json,
    /// RFC 8428 SenML JSON: an array of records.
    Senml,
}

/// The MQTT 5 content type decides when given; otherwise the payload's first character does,
/// since our payload is always a JSON object and a SenML pack always a JSON array.
fn payload_format(content_type: Option<&str>, payload: &[u8]) -> Result<PayloadFormat, String> {
    if let Some(content_type) = content_type {
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        return match media_type.as_str() {
            "application/senml+json" => Ok(PayloadFormat::Senml),
            "application/json" => Ok(PayloadFormat::Json),
            _ => Err(format!(
                "content type `{content_type}` is not application/json or application/senml+json"
            )),
        };
    }
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Ok(PayloadFormat::Senml),
        _ => Ok(PayloadFormat::Json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_topics() {
        assert_eq!(
            device_of_topic("metaward/v1/devices/0012ab:cd/obs"),
            Some("0012ab:cd")
        );
        assert_eq!(device_of_topic("metaward/v1/devices//obs"), None);
        assert_eq!(device_of_topic("metaward/v1/devices/a/b/obs"), None);
        assert_eq!(device_of_topic("metaward/v1/devices/a/state"), None);
    }

    #[test]
    fn payload_formats() {
        use PayloadFormat::*;
        assert_eq!(payload_format(None, b" [{}]"), Ok(Senml));
        assert_eq!(payload_format(None, b"{}"), Ok(Json));
        assert_eq!(payload_format(None, b""), Ok(Json));
        assert_eq!(
            payload_format(Some("application/senml+json; charset=utf-8"), b"{}"),
            Ok(Senml)
        );
        assert_eq!(payload_format(Some("Application/JSON"), b"[]"), Ok(Json));
        assert!(payload_format(Some("application/senml+cbor"), b"").is_err());
    }
}
