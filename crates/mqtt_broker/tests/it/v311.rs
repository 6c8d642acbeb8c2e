//! MQTT 3.1.1 with rumqttc's v4 client.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{Event, Packet, QoS};

use crate::support::*;

fn puback(event: &Event) -> Option<u16> {
    match event {
        Event::Incoming(Packet::PubAck(ack)) => Some(ack.pkid),
        _ => None,
    }
}

fn publish(event: &Event) -> Option<rumqttc::Publish> {
    match event {
        Event::Incoming(Packet::Publish(publish)) => Some(publish.clone()),
        _ => None,
    }
}

fn suback(event: &Event) -> Option<()> {
    matches!(event, Event::Incoming(Packet::SubAck(_))).then_some(())
}

#[tokio::test]
async fn puback_only_after_handler_resolves() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let (client, mut events) = client_v4(&broker, "dev-1");

    let release = handler.gate();
    client
        .publish(
            "metaward/v1/devices/dev-1/obs",
            QoS::AtLeastOnce,
            false,
            b"{}".to_vec(),
        )
        .await
        .unwrap();
    handler.wait_for_count(1).await;
    assert!(
        !arrives_within(&mut events, Duration::from_millis(400), puback).await,
        "PUBACK arrived before the handler resolved"
    );
    release.send(()).unwrap();
    next_matching(&mut events, puback).await;
    assert_eq!(handler.topics(), ["metaward/v1/devices/dev-1/obs"]);
    broker.shutdown().await;
}

#[tokio::test]
async fn routes_to_wildcard_subscribers_after_the_handler() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let (subscriber, mut sub_events) = client_v4(&broker, "screen");
    subscriber
        .subscribe("metaward/v1/devices/+/obs", QoS::AtLeastOnce)
        .await
        .unwrap();
    next_matching(&mut sub_events, suback).await;
    let (everything, mut all_events) = client_v4(&broker, "everything");
    everything.subscribe("#", QoS::AtMostOnce).await.unwrap();
    next_matching(&mut all_events, suback).await;

    let (device, mut device_events) = client_v4(&broker, "dev-2");
    device
        .publish("$internal/x", QoS::AtLeastOnce, false, b"hidden".to_vec())
        .await
        .unwrap();
    device
        .publish(
            "metaward/v1/devices/dev-2/cmd",
            QoS::AtLeastOnce,
            false,
            b"no".to_vec(),
        )
        .await
        .unwrap();
    device
        .publish(
            "metaward/v1/devices/dev-2/obs",
            QoS::AtLeastOnce,
            false,
            b"{\"time\":1}".to_vec(),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        next_matching(&mut device_events, puback).await;
    }

    let got = next_matching(&mut sub_events, publish).await;
    assert_eq!(got.topic, "metaward/v1/devices/dev-2/obs");
    assert_eq!(&got.payload[..], b"{\"time\":1}");
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert!(!arrives_within(&mut sub_events, Duration::from_millis(200), publish).await);

    // '#' gets both ordinary topics at QoS 0 (min of publish and subscription), never '$internal'
    let first = next_matching(&mut all_events, publish).await;
    let second = next_matching(&mut all_events, publish).await;
    assert_eq!(first.topic, "metaward/v1/devices/dev-2/cmd");
    assert_eq!(second.topic, "metaward/v1/devices/dev-2/obs");
    assert_eq!(second.qos, QoS::AtMostOnce);
    assert!(!arrives_within(&mut all_events, Duration::from_millis(200), publish).await);
    assert_eq!(handler.count(), 3);
    broker.shutdown().await;
}

#[tokio::test]
async fn retained_message_is_sent_on_subscribe_and_cleared_by_empty_payload() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let (device, mut device_events) = client_v4(&broker, "room-sensor");
    device
        .publish(
            "metaward/v1/rooms/r1/state",
            QoS::AtLeastOnce,
            true,
            b"22C".to_vec(),
        )
        .await
        .unwrap();
    next_matching(&mut device_events, puback).await;

    let (late, mut late_events) = client_v4(&broker, "late");
    late.subscribe("metaward/v1/rooms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let got = next_matching(&mut late_events, publish).await;
    assert_eq!(got.topic, "metaward/v1/rooms/r1/state");
    assert!(got.retain);
    assert_eq!(&got.payload[..], b"22C");

    device
        .publish(
            "metaward/v1/rooms/r1/state",
            QoS::AtLeastOnce,
            true,
            Vec::new(),
        )
        .await
        .unwrap();
    next_matching(&mut device_events, puback).await;
    let (later, mut later_events) = client_v4(&broker, "later");
    later
        .subscribe("metaward/v1/rooms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    next_matching(&mut later_events, suback).await;
    assert!(!arrives_within(&mut later_events, Duration::from_millis(300), publish).await);
    broker.shutdown().await;
}

#[tokio::test]
async fn kept_but_invalid_is_acked_and_not_kept_closes_the_connection() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let (device, mut events) = client_v4(&broker, "dev-3");
    device
        .publish(
            "metaward/v1/devices/dev-3/obs",
            QoS::AtLeastOnce,
            false,
            b"not json".to_vec(),
        )
        .await
        .unwrap();
    next_matching(&mut events, puback).await;

    device
        .publish(
            "metaward/v1/devices/dev-3/obs",
            QoS::AtLeastOnce,
            false,
            b"reject".to_vec(),
        )
        .await
        .unwrap();
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(Ok(Event::Incoming(Packet::PubAck(_)))) => return false,
                Some(Ok(_)) => continue,
                _ => return true,
            }
        }
    })
    .await
    .unwrap();
    assert!(
        closed,
        "a message the handler did not keep must not be acknowledged on 3.1.1"
    );
    assert_eq!(broker.stats().publishes_refused, 2);
    broker.shutdown().await;
}
