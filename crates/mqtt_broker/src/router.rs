//! State shared by all connections: subscriptions, retained messages, the client-id
//! registry (session takeover) and counters.
//!
//! Locks here are std mutexes held only for map operations, never across an await.
//! Routing is a linear scan of subscribers × filters: fine for a ward's devices and screens
//! (hundreds), to be replaced by a topic trie if that ever shows in a profile.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::topic::filter_matches;
use crate::wire::ProtocolErrorKind;
use crate::{BrokerConfig, Handler, QoS};

/// A message on its way to one subscriber.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
}

struct Subscriber {
    sender: mpsc::Sender<Delivery>,
    filters: HashMap<String, SubscriptionOptions>,
    /// Cancelled, with `overflowed` set, when a QoS 1 message does not fit in the queue.
    token: CancellationToken,
    overflowed: Arc<AtomicBool>,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub connections_accepted: AtomicU64,
    pub connections_current: AtomicU64,
    pub connections_refused: AtomicU64,
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub publishes_received: AtomicU64,
    pub publishes_refused: AtomicU64,
    pub publishes_routed: AtomicU64,
    pub deliveries_dropped: AtomicU64,
    pub protocol_errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn protocol_error(&self, kind: ProtocolErrorKind) {
        *lock(&self.protocol_errors)
            .entry(kind.as_str())
            .or_default() += 1;
    }
}

pub(crate) struct Shared {
    pub config: BrokerConfig,
    pub handler: Arc<dyn Handler>,
    pub stats: Stats,
    pub shutdown: CancellationToken,
    next_connection_id: AtomicU64,
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    retained: Mutex<BTreeMap<String, Delivery>>,
    sessions: Mutex<HashMap<String, (u64, CancellationToken)>>,
}

/// A poisoned lock only means another task panicked mid-update of a plain map; the map is
/// still usable, and one connection's panic must not take the broker down.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(config: BrokerConfig, handler: Arc<dyn Handler>) -> Self {
        Self {
            config,
            handler,
            stats: Stats::default(),
            shutdown: CancellationToken::new(),
            next_connection_id: AtomicU64::new(1),
            subscribers: Mutex::default(),
            retained: Mutex::default(),
            sessions: Mutex::default(),
        }
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers `connection_id` as the holder of `client_id`, returning the token of the
    /// connection that held it before (MQTT: the older connection is disconnected).
    pub fn take_over_client_id(
        &self,
        client_id: &str,
        connection_id: u64,
        token: CancellationToken,
    ) -> Option<CancellationToken> {
        lock(&self.sessions)
            .insert(client_id.to_owned(), (connection_id, token))
            .map(|(_, old)| old)
    }

    pub fn release_client_id(&self, client_id: &str, connection_id: u64) {
        let mut sessions = lock(&self.sessions);
        if sessions
            .get(client_id)
            .is_some_and(|(id, _)| *id == connection_id)
        {
            sessions.remove(client_id);
        }
    }

    pub fn add_subscriber(
        &self,
        connection_id: u64,
        sender: mpsc::Sender<Delivery>,
        token: CancellationToken,
        overflowed: Arc<AtomicBool>,
    ) {
        lock(&self.subscribers).insert(
            connection_id,
            Subscriber {
                sender,
                filters: HashMap::new(),
                token,
                overflowed,
            },
        );
    }

    pub fn remove_subscriber(&self, connection_id: u64) {
        lock(&self.subscribers).remove(&connection_id);
    }

    /// Adds or replaces a subscription; returns whether one existed for this filter.
    pub fn subscribe(
        &self,
        connection_id: u64,
        filter: &str,
        options: SubscriptionOptions,
    ) -> bool {
        lock(&self.subscribers)
            .get_mut(&connection_id)
            .map(|subscriber| {
                subscriber
                    .filters
                    .insert(filter.to_owned(), options)
                    .is_some()
            })
            .unwrap_or(false)
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&self, connection_id: u64, filter: &str) -> bool {
        lock(&self.subscribers)
            .get_mut(&connection_id)
            .map(|subscriber| subscriber.filters.remove(filter).is_some())
            .unwrap_or(false)
    }

    /// Retained messages whose topic matches `filter`.
    pub fn retained_matching(&self, filter: &str) -> Vec<Delivery> {
        lock(&self.retained)
            .iter()
            .filter(|(topic, _)| filter_matches(filter, topic))
            .map(|(_, message)| message.clone())
            .collect()
    }

    /// Stores or clears the retained message of `topic` (if `retain`) and queues the message
    /// to every matching subscriber with QoS = min(publish, subscription). Never waits: a
    /// subscriber whose queue is full loses this message (counted); if the message was QoS 1
    /// the subscriber is also disconnected (MQTT 5: 0x97 quota exceeded), so the loss is not
    /// silent and it resubscribes and gets the retained state. Returns the number of
    /// subscribers it was queued to.
    pub fn route(
        &self,
        publisher: Option<u64>,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) -> usize {
        let topic: Arc<str> = Arc::from(topic);
        if retain {
            let mut retained = lock(&self.retained);
            if payload.is_empty() {
                retained.remove(&*topic);
            } else {
                retained.insert(
                    topic.to_string(),
                    Delivery {
                        topic: topic.clone(),
                        payload: payload.clone(),
                        qos: qos.min(QoS::AtLeastOnce),
                        retain: true,
                    },
                );
            }
        }

        let mut queued = 0;
        let mut dropped = 0;
        let subscribers = lock(&self.subscribers);
        for (connection_id, subscriber) in subscribers.iter() {
            let mut granted: Option<QoS> = None;
            let mut keep_retain = false;
            for (filter, options) in &subscriber.filters {
                if options.no_local && publisher == Some(*connection_id) {
                    continue;
                }
                if filter_matches(filter, &topic) {
                    granted = Some(granted.map_or(options.qos, |q| q.max(options.qos)));
                    keep_retain |= options.retain_as_published;
                }
            }
            let Some(granted) = granted else { continue };
            let delivery = Delivery {
                topic: topic.clone(),
                payload: payload.clone(),
                qos: qos.min(granted).min(QoS::AtLeastOnce),
                retain: retain && keep_retain,
            };
            match subscriber.sender.try_send(delivery) {
                Ok(()) => queued += 1,
                Err(mpsc::error::TrySendError::Full(delivery)) => {
                    dropped += 1;
                    if delivery.qos == QoS::AtLeastOnce {
                        subscriber.overflowed.store(true, Ordering::Relaxed);
                        subscriber.token.cancel();
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        drop(subscribers);
        Stats::add(&self.stats.publishes_routed, queued as u64);
        if dropped > 0 {
            Stats::add(&self.stats.deliveries_dropped, dropped);
            tracing::debug!(dropped, "subscriber queues full, messages dropped");
        }
        queued
    }
}
