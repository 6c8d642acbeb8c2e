use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use model::DeviceId;
use mqtt_broker::{
    ClientInfo, ConnectRefusal, Handler, IncomingPublish, PublishOutcome, PublishReason,
};

use super::payload;
use crate::pipeline::{Ingest, now};
use crate::record::DeadLetter;

pub const DEVICE_TOPIC_PREFIX: &str = "metaward/v1/devices/";
const SOURCE: &str = "mqtt";

pub struct MqttSource {
    ingest: Ingest,
}

impl MqttSource {
    pub fn new(ingest: Ingest) -> Arc<MqttSource> {
        Arc::new(MqttSource { ingest })
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
    fn on_connect(&self, _client: &ClientInfo) -> Result<(), ConnectRefusal> {
        // Device credentials arrive with the security issue; until then the broker binds to
        // loopback only unless configured otherwise.
        Ok(())
    }

    fn on_publish(
        &self,
        _client: &ClientInfo,
        publish: IncomingPublish,
    ) -> BoxFuture<'static, PublishOutcome> {
        let ingest = self.ingest.clone();
        // Run to completion even if the client disconnects meanwhile: once a message is on its
        // way into the log, the twin must see it too.
        let work = tokio::spawn(async move { handle(ingest, publish).await });
        async move {
            work.await
                .unwrap_or(PublishOutcome::rejected(PublishReason::UnspecifiedError))
        }
        .boxed()
    }
}

async fn handle(ingest: Ingest, publish: IncomingPublish) -> PublishOutcome {
    let received = now();
    // Topics outside the device namespace (a client's own chatter, subscriptions for
    // dashboards) are routed by the broker but are not device data.
    if !publish.topic.starts_with(DEVICE_TOPIC_PREFIX) {
        return PublishOutcome::accepted();
    }
    ingest.metrics().received(SOURCE);
    let dead_letter = |reason: &str, detail: String| DeadLetter {
        source: SOURCE.into(),
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
        return keep(&ingest, dead, PublishReason::TopicNameInvalid).await;
    };
    let device_id = DeviceId::new(device_id);
    match payload::parse(
        ingest.ward().catalog,
        &device_id,
        &publish.payload,
        received,
    ) {
        Ok(observations) => match ingest
            .accept(SOURCE, device_id, observations, received, None)
            .await
        {
            Ok(_) => PublishOutcome::accepted(),
            Err(error) => {
                tracing::error!(%error, "could not make a device message durable");
                PublishOutcome::rejected(PublishReason::UnspecifiedError)
            }
        },
        Err(error) => {
            tracing::warn!(device = %device_id, %error, "rejected device payload");
            keep(
                &ingest,
                dead_letter("payload", error.to_string()),
                PublishReason::PayloadFormatInvalid,
            )
            .await
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
}
