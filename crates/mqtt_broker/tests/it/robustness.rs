//! Hostile and broken peers: each loses only its own connection.

use std::sync::Arc;
use std::time::Duration;

use mqtt_broker::BrokerConfig;
use rumqttc::{Event, Packet, QoS};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;

fn puback(event: &Event) -> Option<()> {
    matches!(event, Event::Incoming(Packet::PubAck(_))).then_some(())
}

#[tokio::test]
async fn malformed_bytes_close_only_that_connection() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler.clone()).await;
    let (good, mut good_events) = client_v4(&broker, "good");
    next_matching(&mut good_events, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
    })
    .await;

    // a CONNECT whose protocol name length runs past the packet
    let mut garbage = TcpStream::connect(broker.local_addr()).await.unwrap();
    garbage
        .write_all(&[0x10, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    assert!(read_until_closed(&mut garbage).await.is_empty());

    // a 3.1.1 client that sends a PUBLISH with QoS 3 after connecting
    let (mut broken, _) = raw_connected(&broker, 4, "broken", 30).await;
    broken
        .write_all(&[0x36, 0x03, 0x00, 0x01, b'a'])
        .await
        .unwrap();
    read_until_closed(&mut broken).await;

    good.publish(
        "metaward/v1/devices/good/obs",
        QoS::AtLeastOnce,
        false,
        b"{}".to_vec(),
    )
    .await
    .unwrap();
    next_matching(&mut good_events, puback).await;
    let stats = broker.stats();
    assert_eq!(
        stats.protocol_errors.get("malformed_packet"),
        Some(&2),
        "{stats:?}"
    );
    assert_eq!(handler.topics(), ["metaward/v1/devices/good/obs"]);
    broker.shutdown().await;
}

#[tokio::test]
async fn v5_malformed_packet_gets_disconnect_0x81() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler).await;
    let (mut stream, connack) = raw_connected(&broker, 5, "v5-broken", 30).await;
    assert_eq!(connack[3], 0x00, "connack reason");
    stream
        .write_all(&[0x36, 0x04, 0x00, 0x01, b'a', 0x00])
        .await
        .unwrap();
    let rest = read_until_closed(&mut stream).await;
    assert_eq!(rest, [0xE0, 0x02, 0x81, 0x00]);
    broker.shutdown().await;
}

#[tokio::test]
async fn v5_packet_too_large_gets_disconnect_0x95() {
    let handler = Arc::new(RecordingHandler::default());
    let config = BrokerConfig {
        max_packet_bytes: 256,
        ..BrokerConfig::default()
    };
    let broker = start_with(handler, config).await;
    let (mut stream, _) = raw_connected(&broker, 5, "v5-large", 30).await;
    // a PUBLISH announcing 1000 bytes: refused on its fixed header alone
    stream.write_all(&[0x30, 0xE8, 0x07]).await.unwrap();
    assert_eq!(
        read_until_closed(&mut stream).await,
        [0xE0, 0x02, 0x95, 0x00]
    );
    assert_eq!(
        broker.stats().protocol_errors.get("packet_too_large"),
        Some(&1)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn keep_alive_timeout_closes_a_silent_client() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler).await;
    let started = std::time::Instant::now();
    let (mut silent, _) = raw_connected(&broker, 5, "silent", 1).await;
    assert_eq!(
        read_until_closed(&mut silent).await,
        [0xE0, 0x02, 0x8D, 0x00]
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "closed after {waited:?}"
    );
    let (mut silent_v4, _) = raw_connected(&broker, 4, "silent-v4", 1).await;
    assert!(read_until_closed(&mut silent_v4).await.is_empty());
    assert_eq!(
        broker.stats().protocol_errors.get("keep_alive_timeout"),
        Some(&2)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn unsupported_protocol_level_gets_connack_0x01() {
    let handler = Arc::new(RecordingHandler::default());
    let broker = start(handler).await;
    let mut stream = TcpStream::connect(broker.local_addr()).await.unwrap();
    stream
        .write_all(&raw_connect(6, "future", 30))
        .await
        .unwrap();
    assert_eq!(
        read_until_closed(&mut stream).await,
        [0x20, 0x02, 0x00, 0x01]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn handler_refusal_maps_to_connack_code() {
    let handler = Arc::new(RecordingHandler {
        refuse_user: Some("intruder"),
        ..RecordingHandler::default()
    });
    let broker = start(handler).await;
    let mut options = rumqttc::MqttOptions::new("x", "127.0.0.1", broker.local_addr().port());
    options.set_credentials("intruder", "secret");
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(options, 4);
    let error = tokio::time::timeout(WAIT, eventloop.poll())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            error,
            rumqttc::ConnectionError::ConnectionRefused(rumqttc::ConnectReturnCode::NotAuthorized)
        ),
        "{error:?}"
    );
    assert_eq!(broker.stats().connections_refused, 1);
    broker.shutdown().await;
}
