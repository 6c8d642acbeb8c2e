//! MQTT 5 with rumqttc's v5 client.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::v5::Event;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAck, PubAckReason, PublishProperties};

use crate::support::*;

fn puback(event: &Event) -> Option<PubAck> {
    match event {
        Event::Incoming(Packet::PubAck(ack)) => Some(ack.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn puback_only_after_handler_resolves() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let (client, mut events) = client_v5(&broker, "dev-5");

    let release = handler.gate();
    client
        .publish(
            "metaward/v1/devices/dev-5/obs",
            QoS::AtLeastOnce,
            false,
            "{}",
        )
        .await
        .unwrap();
    handler.wait_for_count(1).await;
    assert!(!arrives_within(&mut events, Duration::from_millis(400), puback).await);
    release.send(()).unwrap();
    let ack = next_matching(&mut events, puback).await;
    assert_eq!(ack.reason, PubAckReason::Success);
    broker.shutdown().await;
}

#[tokio::test]
async fn negative_puback_carries_the_handler_reason() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let (client, mut events) = client_v5(&broker, "dev-6");
    client
        .publish(
            "metaward/v1/devices/dev-6/obs",
            QoS::AtLeastOnce,
            false,
            "not json",
        )
        .await
        .unwrap();
    assert_eq!(
        next_matching(&mut events, puback).await.reason,
        PubAckReason::PayloadFormatInvalid
    );
    client
        .publish(
            "metaward/v1/devices/dev-6/obs",
            QoS::AtLeastOnce,
            false,
            "reject",
        )
        .await
        .unwrap();
    assert_eq!(
        next_matching(&mut events, puback).await.reason,
        PubAckReason::UnspecifiedError
    );
    // the connection stays usable
    client
        .publish(
            "metaward/v1/devices/dev-6/obs",
            QoS::AtLeastOnce,
            false,
            "{}",
        )
        .await
        .unwrap();
    assert_eq!(
        next_matching(&mut events, puback).await.reason,
        PubAckReason::Success
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn pipelined_publishes_are_acknowledged_in_order() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let (client, mut events) = client_v5(&broker, "dev-7");
    let first = handler.gate();
    let second = handler.gate();
    for n in 0..3 {
        client
            .publish(
                "metaward/v1/devices/dev-7/obs",
                QoS::AtLeastOnce,
                false,
                format!("{{\"n\":{n}}}"),
            )
            .await
            .unwrap();
    }
    // all three reach the handler while the first is still pending
    handler.wait_for_count(3).await;
    second.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        handler.resolved.load(Ordering::SeqCst),
        2,
        "second and third resolved"
    );
    assert!(!arrives_within(&mut events, Duration::from_millis(300), puback).await);
    first.send(()).unwrap();
    let ids: Vec<u16> = vec![
        next_matching(&mut events, puback).await.pkid,
        next_matching(&mut events, puback).await.pkid,
        next_matching(&mut events, puback).await.pkid,
    ];
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "acks out of order: {ids:?}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn qos2_calls_the_handler_once_and_completes() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let (client, mut events) = client_v5(&broker, "dev-8");
    client
        .publish(
            "metaward/v1/devices/dev-8/obs",
            QoS::ExactlyOnce,
            false,
            "{}",
        )
        .await
        .unwrap();
    next_matching(&mut events, |e| {
        matches!(e, Event::Incoming(Packet::PubRec(_))).then_some(())
    })
    .await;
    next_matching(&mut events, |e| {
        matches!(e, Event::Incoming(Packet::PubComp(_))).then_some(())
    })
    .await;
    assert_eq!(handler.count(), 1);
    broker.shutdown().await;
}

#[tokio::test]
async fn inbound_topic_alias_is_resolved() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let (client, mut events) = client_v5(&broker, "dev-9");
    // wait for CONNACK so the client knows the broker's topic alias maximum
    next_matching(&mut events, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await;
    let with_alias = PublishProperties {
        topic_alias: Some(1),
        ..Default::default()
    };
    client
        .publish_with_properties(
            "metaward/v1/devices/dev-9/obs",
            QoS::AtLeastOnce,
            false,
            "{\"n\":1}",
            with_alias.clone(),
        )
        .await
        .unwrap();
    next_matching(&mut events, puback).await;
    client
        .publish_with_properties("", QoS::AtLeastOnce, false, "{\"n\":2}", with_alias)
        .await
        .unwrap();
    assert_eq!(
        next_matching(&mut events, puback).await.reason,
        PubAckReason::Success
    );
    assert_eq!(
        handler.topics(),
        [
            "metaward/v1/devices/dev-9/obs",
            "metaward/v1/devices/dev-9/obs"
        ]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn routes_from_v5_to_v5_subscriber() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let (subscriber, mut sub_events) = client_v5(&broker, "screen-5");
    subscriber
        .subscribe("metaward/+/devices/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    next_matching(&mut sub_events, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;
    let (device, mut events) = client_v5(&broker, "dev-10");
    device
        .publish(
            "metaward/v1/devices/dev-10/obs",
            QoS::AtLeastOnce,
            false,
            "{}",
        )
        .await
        .unwrap();
    next_matching(&mut events, puback).await;
    let got = next_matching(&mut sub_events, |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(&got.topic[..], b"metaward/v1/devices/dev-10/obs");
    assert_eq!(got.qos, QoS::AtLeastOnce);
    broker.shutdown().await;
}
