//! The publisher against a minimal MQTT 3.1.1 peer on a real socket: it answers CONNECT with
//! CONNACK and each QoS 1 PUBLISH with PUBACK, and counts the topics it received.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use model::Timestamp;
use sim::{PublisherOptions, SimWard, run_publisher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

async fn read_packet(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let header = stream.read_u8().await.ok()?;
    let mut length = 0usize;
    let mut shift = 0;
    loop {
        let byte = stream.read_u8().await.ok()?;
        length |= usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((header, body))
}

/// The peer; when `drop_once` is set, the first connection to reach 10 publishes is cut, as if
/// the broker restarted.
async fn serve(mut stream: TcpStream, publishes: Arc<AtomicU64>, drop_once: Arc<AtomicBool>) {
    let mut received = 0;
    while let Some((header, body)) = read_packet(&mut stream).await {
        if received >= 10 && drop_once.swap(false, Ordering::SeqCst) {
            return;
        }
        match header >> 4 {
            1 => stream.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap(),
            3 => {
                let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                let topic = std::str::from_utf8(&body[2..2 + topic_len]).unwrap();
                assert!(topic.starts_with("metaward/v1/devices/") && topic.ends_with("/obs"));
                let payload_start = 2 + topic_len + if header & 0x06 != 0 { 2 } else { 0 };
                serde_json::from_slice::<serde_json::Value>(&body[payload_start..]).unwrap();
                if header & 0x06 != 0 {
                    let id = &body[2 + topic_len..2 + topic_len + 2];
                    stream.write_all(&[0x40, 0x02, id[0], id[1]]).await.unwrap();
                }
                publishes.fetch_add(1, Ordering::Relaxed);
                received += 1;
            }
            12 => stream.write_all(&[0xd0, 0x00]).await.unwrap(),
            14 => return,
            _ => {}
        }
    }
}

async fn start_peer(drop_once: bool) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let publishes = Arc::new(AtomicU64::new(0));
    let counter = publishes.clone();
    let drop_once = Arc::new(AtomicBool::new(drop_once));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, counter.clone(), drop_once.clone()));
        }
    });
    (addr, publishes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_when_the_connection_drops() {
    let (addr, publishes) = start_peer(true).await;
    let ward = SimWard::new(crate::support::config(2, 2));
    let options = PublisherOptions {
        tick: Duration::from_millis(20),
        time_scale: 10.0,
        ..PublisherOptions::default()
    };
    let shutdown = CancellationToken::new();
    let publisher = tokio::spawn(run_publisher(addr, ward, options, shutdown.clone()));
    for _ in 0..1000 {
        if publishes.load(Ordering::Relaxed) >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let stats = publisher.await.unwrap().unwrap();
    assert!(stats.connection_errors >= 1, "{stats:?}");
    assert!(
        stats.connections >= 3,
        "two gateways and a reconnection: {stats:?}"
    );
    assert!(publishes.load(Ordering::Relaxed) >= 100, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_every_device_message_with_qos1_and_counts_acks() {
    let (addr, publishes) = start_peer(false).await;

    let mut config = crate::support::config(1, 3);
    config.start = Timestamp::from_millis(crate::support::START_MS);
    let ward = SimWard::new(config);
    let options = PublisherOptions {
        tick: Duration::from_millis(20),
        // Ten simulated seconds per real second keeps the test short.
        time_scale: 10.0,
        ..PublisherOptions::default()
    };
    let shutdown = CancellationToken::new();
    let publisher = tokio::spawn(run_publisher(addr, ward, options, shutdown.clone()));
    // Wait (not a timed assertion: the counts only have to arrive eventually).
    for _ in 0..500 {
        if publishes.load(Ordering::Relaxed) >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let stats = publisher.await.unwrap().unwrap();
    assert!(stats.published >= 40, "{stats:?}");
    assert_eq!(stats.acked, stats.published, "{stats:?}");
    assert!(
        stats.connections >= 2,
        "one connection per bed and per room: {stats:?}"
    );
    assert_eq!(publishes.load(Ordering::Relaxed), stats.published);
}
