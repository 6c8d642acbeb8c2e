//! Framing and the translation between rumqttc's v4 (3.1.1) and v5 packet types and one
//! protocol-neutral set of packets the connection task works with.
//!
//! Framing (fixed header, remaining length, size limit) is ours so that an oversized packet is
//! refused before its body is buffered; the packet bodies are read and written by
//! `rumqttc::mqttbytes::v4` and `rumqttc::v5::mqttbytes::v5`. This module never logs.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

use crate::QoS;

/// The protocol a connection speaks, chosen from the CONNECT packet's protocol level byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5 (protocol level 5).
    V5,
}

/// Why a peer's bytes could not be accepted. The names are the labels used in the stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolErrorKind {
    MalformedPacket,
    PacketTooLarge,
    ProtocolError,
    UnsupportedProtocolVersion,
    TopicAliasInvalid,
    TopicNameInvalid,
    ConnectTimeout,
    KeepAliveTimeout,
}

impl ProtocolErrorKind {
    /// Label for stats and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedPacket => "malformed_packet",
            Self::PacketTooLarge => "packet_too_large",
            Self::ProtocolError => "protocol_error",
            Self::UnsupportedProtocolVersion => "unsupported_protocol_version",
            Self::TopicAliasInvalid => "topic_alias_invalid",
            Self::TopicNameInvalid => "topic_name_invalid",
            Self::ConnectTimeout => "connect_timeout",
            Self::KeepAliveTimeout => "keep_alive_timeout",
        }
    }

    /// The MQTT 5 reason code for a DISCONNECT (or a refusing CONNACK) sent because of it.
    pub fn v5_reason_code(self) -> u8 {
        match self {
            Self::MalformedPacket => 0x81,
            Self::PacketTooLarge => 0x95,
            Self::ProtocolError | Self::ConnectTimeout => 0x82,
            Self::UnsupportedProtocolVersion => 0x84,
            Self::TopicAliasInvalid => 0x94,
            Self::TopicNameInvalid => 0x90,
            Self::KeepAliveTimeout => 0x8D,
        }
    }
}

/// A protocol violation found while reading.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", kind.as_str())]
pub struct WireError {
    pub kind: ProtocolErrorKind,
    pub detail: String,
}

impl WireError {
    pub fn new(kind: ProtocolErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

fn malformed(detail: impl std::fmt::Display) -> WireError {
    WireError::new(ProtocolErrorKind::MalformedPacket, detail.to_string())
}

/// One complete packet cut from the stream, body not yet decoded.
pub struct Frame {
    pub byte1: u8,
    pub remaining_len: usize,
    /// The whole packet, fixed header included (what rumqttc's readers expect).
    pub bytes: BytesMut,
}

impl Frame {
    pub fn packet_type(&self) -> u8 {
        self.byte1 >> 4
    }
}

/// Cuts the next complete packet from `buffer`, or returns `None` when more bytes are needed.
/// A packet whose total size exceeds `max_packet_bytes` is refused as soon as its fixed
/// header is seen, before its body is buffered.
pub fn next_frame(
    buffer: &mut BytesMut,
    max_packet_bytes: usize,
) -> Result<Option<Frame>, WireError> {
    if buffer.len() < 2 {
        return Ok(None);
    }
    let byte1 = buffer[0];
    let mut remaining_len: usize = 0;
    let mut header_len = 1;
    let mut shift = 0;
    loop {
        let Some(&byte) = buffer.get(header_len) else {
            return Ok(None);
        };
        header_len += 1;
        remaining_len |= usize::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(malformed("remaining length longer than four bytes"));
        }
    }
    let frame_len = header_len + remaining_len;
    if frame_len > max_packet_bytes {
        return Err(WireError::new(
            ProtocolErrorKind::PacketTooLarge,
            format!("packet of {frame_len} bytes exceeds the limit of {max_packet_bytes}"),
        ));
    }
    if buffer.len() < frame_len {
        buffer.reserve(frame_len - buffer.len());
        return Ok(None);
    }
    Ok(Some(Frame {
        byte1,
        remaining_len,
        bytes: buffer.split_to(frame_len),
    }))
}

/// Reads the protocol level byte of a CONNECT frame (4 = 3.1.1, 5 = MQTT 5) without decoding
/// the rest, so the right codec can be chosen.
pub fn connect_protocol_level(frame: &Frame) -> Result<u8, WireError> {
    if frame.packet_type() != 1 {
        return Err(WireError::new(
            ProtocolErrorKind::ProtocolError,
            "first packet is not CONNECT",
        ));
    }
    let header_len = frame.bytes.len() - frame.remaining_len;
    let body = &frame.bytes[header_len..];
    // protocol name: u16 length + "MQTT" (or "MQIsdp" for 3.1), then the level byte
    if body.len() < 2 {
        return Err(malformed("connect too short"));
    }
    let name_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let name = body
        .get(2..2 + name_len)
        .ok_or_else(|| malformed("connect too short"))?;
    let level = *body
        .get(2 + name_len)
        .ok_or_else(|| malformed("connect too short"))?;
    match (name, level) {
        (b"MQTT", 4 | 5) => Ok(level),
        (b"MQTT", _) | (b"MQIsdp", _) => Err(WireError::new(
            ProtocolErrorKind::UnsupportedProtocolVersion,
            format!("protocol level {level}"),
        )),
        _ => Err(malformed("unknown protocol name")),
    }
}

/// A CONNECT, protocol-neutral.
#[derive(Debug)]
pub struct ConnectPacket {
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub will: Option<WillPacket>,
    /// MQTT 5: the most QoS 1/2 publishes the client accepts unacknowledged.
    pub receive_maximum: Option<u16>,
    /// MQTT 5: the largest packet the client accepts.
    pub max_packet_size: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct WillPacket {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

/// An inbound PUBLISH. `topic` is empty when an MQTT 5 client uses only a topic alias.
#[derive(Debug)]
pub struct PublishPacket {
    pub topic: String,
    pub topic_alias: Option<u16>,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: u16,
    pub payload: Bytes,
    pub payload_format_utf8: bool,
    pub content_type: Option<String>,
}

#[derive(Debug)]
pub struct SubscribeFilter {
    pub filter: String,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// MQTT 5 retain handling: 0 send retained, 1 only for a new subscription, 2 never.
    pub retain_handling: u8,
}

/// Packets a client may send to a server.
#[derive(Debug)]
pub enum Incoming {
    Connect(ConnectPacket),
    Publish(PublishPacket),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        packet_id: u16,
        filters: Vec<SubscribeFilter>,
    },
    Unsubscribe {
        packet_id: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// The reason code (0x00 normal, 0x04 with will, ...); always 0 on 3.1.1.
    Disconnect(u8),
}

fn qos_from_v4(qos: v4_qos::QoS) -> QoS {
    match qos {
        v4_qos::QoS::AtMostOnce => QoS::AtMostOnce,
        v4_qos::QoS::AtLeastOnce => QoS::AtLeastOnce,
        v4_qos::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos_from_v5(qos: rumqttc::v5::mqttbytes::QoS) -> QoS {
    match qos {
        rumqttc::v5::mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        rumqttc::v5::mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos_to_v4(qos: QoS) -> v4_qos::QoS {
    match qos {
        QoS::AtMostOnce => v4_qos::QoS::AtMostOnce,
        QoS::AtLeastOnce => v4_qos::QoS::AtLeastOnce,
        QoS::ExactlyOnce => v4_qos::QoS::ExactlyOnce,
    }
}

fn qos_to_v5(qos: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

mod v4_qos {
    pub use rumqttc::mqttbytes::QoS;
}

/// Fixed-header flags that MQTT requires for each packet type a client may send
/// (PUBLISH's flags carry its QoS, DUP and RETAIN and are checked by the decoder).
fn check_reserved_flags(frame: &Frame) -> Result<(), WireError> {
    let flags = frame.byte1 & 0x0F;
    let expected = match frame.packet_type() {
        3 => return Ok(()),
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if flags != expected {
        return Err(malformed(format!(
            "reserved flags {flags:#06b} on packet type {}",
            frame.packet_type()
        )));
    }
    Ok(())
}

/// Decodes one frame with the codec of `protocol`.
pub fn decode(
    protocol: ProtocolVersion,
    frame: Frame,
    max_packet_bytes: usize,
) -> Result<Incoming, WireError> {
    check_reserved_flags(&frame)?;
    let packet_type = frame.packet_type();
    match packet_type {
        2 | 9 | 11 | 13 => {
            return Err(WireError::new(
                ProtocolErrorKind::ProtocolError,
                format!("packet type {packet_type} is sent by servers only"),
            ));
        }
        0 => return Err(malformed("packet type 0 is reserved")),
        15 => {
            return Err(WireError::new(
                ProtocolErrorKind::ProtocolError,
                "AUTH (enhanced authentication) is not supported",
            ));
        }
        _ => {}
    }
    match protocol {
        ProtocolVersion::V311 => decode_v4(frame, max_packet_bytes),
        ProtocolVersion::V5 => decode_v5(frame, max_packet_bytes),
    }
}

fn decode_v4(mut frame: Frame, max_packet_bytes: usize) -> Result<Incoming, WireError> {
    let packet = v4::Packet::read(&mut frame.bytes, max_packet_bytes).map_err(malformed)?;
    Ok(match packet {
        v4::Packet::Connect(connect) => Incoming::Connect(ConnectPacket {
            client_id: connect.client_id,
            clean_start: connect.clean_session,
            keep_alive: connect.keep_alive,
            username: connect.login.as_ref().map(|login| login.username.clone()),
            password: connect.login.map(|login| login.password),
            will: connect.last_will.map(|will| WillPacket {
                topic: will.topic,
                payload: will.message,
                qos: qos_from_v4(will.qos),
                retain: will.retain,
            }),
            receive_maximum: None,
            max_packet_size: None,
        }),
        v4::Packet::Publish(publish) => Incoming::Publish(PublishPacket {
            topic: publish.topic,
            topic_alias: None,
            qos: qos_from_v4(publish.qos),
            retain: publish.retain,
            dup: publish.dup,
            packet_id: publish.pkid,
            payload: publish.payload,
            payload_format_utf8: false,
            content_type: None,
        }),
        v4::Packet::PubAck(ack) => Incoming::PubAck(ack.pkid),
        v4::Packet::PubRec(rec) => Incoming::PubRec(rec.pkid),
        v4::Packet::PubRel(rel) => Incoming::PubRel(rel.pkid),
        v4::Packet::PubComp(comp) => Incoming::PubComp(comp.pkid),
        v4::Packet::Subscribe(subscribe) => Incoming::Subscribe {
            packet_id: subscribe.pkid,
            filters: subscribe
                .filters
                .into_iter()
                .map(|filter| SubscribeFilter {
                    filter: filter.path,
                    qos: qos_from_v4(filter.qos),
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: 0,
                })
                .collect(),
        },
        v4::Packet::Unsubscribe(unsubscribe) => {
            if unsubscribe.topics.is_empty() {
                return Err(malformed("unsubscribe without topic filters"));
            }
            Incoming::Unsubscribe {
                packet_id: unsubscribe.pkid,
                filters: unsubscribe.topics,
            }
        }
        v4::Packet::PingReq => Incoming::PingReq,
        v4::Packet::Disconnect => Incoming::Disconnect(0),
        other => {
            return Err(WireError::new(
                ProtocolErrorKind::ProtocolError,
                format!("unexpected packet {:?}", packet_name_v4(&other)),
            ));
        }
    })
}

fn packet_name_v4(packet: &v4::Packet) -> &'static str {
    match packet {
        v4::Packet::ConnAck(_) => "connack",
        v4::Packet::SubAck(_) => "suback",
        v4::Packet::UnsubAck(_) => "unsuback",
        v4::Packet::PingResp => "pingresp",
        _ => "other",
    }
}

fn decode_v5(mut frame: Frame, max_packet_bytes: usize) -> Result<Incoming, WireError> {
    // rumqttc's v5 reader refuses a DISCONNECT with no body, which is the common form
    // (reason 0x00 normal disconnection, no properties).
    if frame.packet_type() == 14 && frame.remaining_len == 0 {
        return Ok(Incoming::Disconnect(0));
    }
    let max = u32::try_from(max_packet_bytes).unwrap_or(u32::MAX);
    let packet = v5::Packet::read(&mut frame.bytes, Some(max)).map_err(malformed)?;
    Ok(match packet {
        v5::Packet::Connect(connect, will, login) => {
            let properties = connect.properties.as_ref();
            Incoming::Connect(ConnectPacket {
                client_id: connect.client_id,
                clean_start: connect.clean_start,
                keep_alive: connect.keep_alive,
                username: login.as_ref().map(|login| login.username.clone()),
                password: login.map(|login| login.password),
                will: match will {
                    Some(will) => Some(WillPacket {
                        topic: String::from_utf8(will.topic.to_vec())
                            .map_err(|_| malformed("will topic is not utf-8"))?,
                        payload: will.message,
                        qos: qos_from_v5(will.qos),
                        retain: will.retain,
                    }),
                    None => None,
                },
                receive_maximum: properties.and_then(|p| p.receive_maximum),
                max_packet_size: properties.and_then(|p| p.max_packet_size),
            })
        }
        v5::Packet::Publish(publish) => {
            let properties = publish.properties.as_ref();
            Incoming::Publish(PublishPacket {
                topic: String::from_utf8(publish.topic.to_vec())
                    .map_err(|_| malformed("topic is not utf-8"))?,
                topic_alias: properties.and_then(|p| p.topic_alias),
                qos: qos_from_v5(publish.qos),
                retain: publish.retain,
                dup: publish.dup,
                packet_id: publish.pkid,
                payload_format_utf8: properties.and_then(|p| p.payload_format_indicator) == Some(1),
                content_type: properties.and_then(|p| p.content_type.clone()),
                payload: publish.payload,
            })
        }
        v5::Packet::PubAck(ack) => Incoming::PubAck(ack.pkid),
        v5::Packet::PubRec(rec) => Incoming::PubRec(rec.pkid),
        v5::Packet::PubRel(rel) => Incoming::PubRel(rel.pkid),
        v5::Packet::PubComp(comp) => Incoming::PubComp(comp.pkid),
        v5::Packet::Subscribe(subscribe) => Incoming::Subscribe {
            packet_id: subscribe.pkid,
            filters: subscribe
                .filters
                .into_iter()
                .map(|filter| SubscribeFilter {
                    filter: filter.path,
                    qos: qos_from_v5(filter.qos),
                    no_local: filter.nolocal,
                    retain_as_published: filter.preserve_retain,
                    retain_handling: match filter.retain_forward_rule {
                        v5::RetainForwardRule::OnEverySubscribe => 0,
                        v5::RetainForwardRule::OnNewSubscribe => 1,
                        v5::RetainForwardRule::Never => 2,
                    },
                })
                .collect(),
        },
        v5::Packet::Unsubscribe(unsubscribe) => {
            if unsubscribe.filters.is_empty() {
                return Err(malformed("unsubscribe without topic filters"));
            }
            Incoming::Unsubscribe {
                packet_id: unsubscribe.pkid,
                filters: unsubscribe.filters,
            }
        }
        v5::Packet::PingReq(_) => Incoming::PingReq,
        v5::Packet::Disconnect(disconnect) => Incoming::Disconnect(disconnect.reason_code as u8),
        _ => {
            return Err(WireError::new(
                ProtocolErrorKind::ProtocolError,
                "unexpected packet from a client",
            ));
        }
    })
}

/// Packets the server sends, protocol-neutral. Reason codes are MQTT 5 codes; on 3.1.1 they
/// are mapped to the nearest CONNACK return code or left out.
#[derive(Debug)]
pub enum Outgoing {
    ConnAck {
        session_present: bool,
        reason_code: u8,
        assigned_client_id: Option<String>,
        topic_alias_maximum: u16,
        receive_maximum: u16,
        maximum_packet_size: u32,
    },
    Publish {
        topic: String,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        packet_id: u16,
    },
    PubAck {
        packet_id: u16,
        reason_code: u8,
    },
    PubRec {
        packet_id: u16,
        reason_code: u8,
    },
    PubComp {
        packet_id: u16,
        found: bool,
    },
    /// One entry per filter: the granted QoS, or an MQTT 5 failure reason code.
    SubAck {
        packet_id: u16,
        results: Vec<Result<QoS, u8>>,
    },
    /// One entry per filter: whether a subscription existed.
    UnsubAck {
        packet_id: u16,
        existed: Vec<bool>,
    },
    PingResp,
    /// MQTT 5 only; nothing is written on 3.1.1.
    Disconnect {
        reason_code: u8,
    },
}

/// The MQTT 3.1.1 CONNACK return code nearest to an MQTT 5 CONNACK reason code.
fn v4_connack_code(reason_code: u8) -> v4::ConnectReturnCode {
    match reason_code {
        0x00 => v4::ConnectReturnCode::Success,
        0x84 => v4::ConnectReturnCode::RefusedProtocolVersion,
        0x85 => v4::ConnectReturnCode::BadClientId,
        0x86 => v4::ConnectReturnCode::BadUserNamePassword,
        0x87 | 0x8A => v4::ConnectReturnCode::NotAuthorized,
        _ => v4::ConnectReturnCode::ServiceUnavailable,
    }
}

fn v5_connack_code(reason_code: u8) -> v5::ConnectReturnCode {
    use v5::ConnectReturnCode as C;
    match reason_code {
        0x00 => C::Success,
        0x81 => C::MalformedPacket,
        0x82 => C::ProtocolError,
        0x83 => C::ImplementationSpecificError,
        0x84 => C::UnsupportedProtocolVersion,
        0x85 => C::ClientIdentifierNotValid,
        0x86 => C::BadUserNamePassword,
        0x87 => C::NotAuthorized,
        0x88 => C::ServerUnavailable,
        0x89 => C::ServerBusy,
        0x8A => C::Banned,
        0x8C => C::BadAuthenticationMethod,
        0x95 => C::PacketTooLarge,
        0x97 => C::QuotaExceeded,
        0x9F => C::ConnectionRateExceeded,
        _ => C::UnspecifiedError,
    }
}

fn v5_puback_reason(reason_code: u8) -> v5::PubAckReason {
    use v5::PubAckReason as R;
    match reason_code {
        0x00 => R::Success,
        0x10 => R::NoMatchingSubscribers,
        0x83 => R::ImplementationSpecificError,
        0x87 => R::NotAuthorized,
        0x90 => R::TopicNameInvalid,
        0x91 => R::PacketIdentifierInUse,
        0x97 => R::QuotaExceeded,
        0x99 => R::PayloadFormatInvalid,
        _ => R::UnspecifiedError,
    }
}

fn v5_pubrec_reason(reason_code: u8) -> v5::PubRecReason {
    use v5::PubRecReason as R;
    match reason_code {
        0x00 => R::Success,
        0x10 => R::NoMatchingSubscribers,
        0x83 => R::ImplementationSpecificError,
        0x87 => R::NotAuthorized,
        0x90 => R::TopicNameInvalid,
        0x91 => R::PacketIdentifierInUse,
        0x97 => R::QuotaExceeded,
        0x99 => R::PayloadFormatInvalid,
        _ => R::UnspecifiedError,
    }
}

fn v5_disconnect_reason(reason_code: u8) -> v5::DisconnectReasonCode {
    use v5::DisconnectReasonCode as D;
    match reason_code {
        0x00 => D::NormalDisconnection,
        0x81 => D::MalformedPacket,
        0x82 => D::ProtocolError,
        0x83 => D::ImplementationSpecificError,
        0x87 => D::NotAuthorized,
        0x89 => D::ServerBusy,
        0x8B => D::ServerShuttingDown,
        0x8D => D::KeepAliveTimeout,
        0x8E => D::SessionTakenOver,
        0x8F => D::TopicFilterInvalid,
        0x90 => D::TopicNameInvalid,
        0x93 => D::ReceiveMaximumExceeded,
        0x94 => D::TopicAliasInvalid,
        0x95 => D::PacketTooLarge,
        0x97 => D::QuotaExceeded,
        0x99 => D::PayloadFormatInvalid,
        _ => D::UnspecifiedError,
    }
}

/// Size in bytes the packet takes on the wire (used to honour a v5 client's maximum packet
/// size). Only publishes are ever large, so only they are measured exactly.
pub fn publish_size(topic: &str, payload_len: usize, qos: QoS, protocol: ProtocolVersion) -> usize {
    let mut remaining = 2 + topic.len() + payload_len;
    if qos != QoS::AtMostOnce {
        remaining += 2;
    }
    if protocol == ProtocolVersion::V5 {
        remaining += 1;
    }
    let len_len = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + len_len + remaining
}

/// Appends the encoding of `packet` to `buffer`.
pub fn encode(
    protocol: ProtocolVersion,
    packet: Outgoing,
    buffer: &mut BytesMut,
) -> Result<(), WireError> {
    let result = match protocol {
        ProtocolVersion::V311 => encode_v4(packet, buffer),
        ProtocolVersion::V5 => encode_v5(packet, buffer),
    };
    result.map_err(|error| WireError::new(ProtocolErrorKind::ProtocolError, error))
}

fn encode_v4(packet: Outgoing, buffer: &mut BytesMut) -> Result<(), String> {
    let packet = match packet {
        Outgoing::ConnAck {
            session_present,
            reason_code,
            ..
        } => v4::Packet::ConnAck(v4::ConnAck::new(
            v4_connack_code(reason_code),
            session_present,
        )),
        Outgoing::Publish {
            topic,
            payload,
            qos,
            retain,
            packet_id,
        } => {
            let mut publish = v4::Publish::from_bytes(topic, qos_to_v4(qos), payload);
            publish.retain = retain;
            publish.pkid = packet_id;
            v4::Packet::Publish(publish)
        }
        Outgoing::PubAck { packet_id, .. } => v4::Packet::PubAck(v4::PubAck::new(packet_id)),
        Outgoing::PubRec { packet_id, .. } => v4::Packet::PubRec(v4::PubRec::new(packet_id)),
        Outgoing::PubComp { packet_id, .. } => v4::Packet::PubComp(v4::PubComp::new(packet_id)),
        Outgoing::SubAck { packet_id, results } => v4::Packet::SubAck(v4::SubAck::new(
            packet_id,
            results
                .into_iter()
                .map(|result| match result {
                    Ok(qos) => v4::SubscribeReasonCode::Success(qos_to_v4(qos)),
                    Err(_) => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        Outgoing::UnsubAck { packet_id, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(packet_id)),
        Outgoing::PingResp => v4::Packet::PingResp,
        // 3.1.1 has no server-sent DISCONNECT: the server just closes
        Outgoing::Disconnect { .. } => return Ok(()),
    };
    packet
        .write(buffer, usize::MAX)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

fn encode_v5(packet: Outgoing, buffer: &mut BytesMut) -> Result<(), String> {
    let packet = match packet {
        Outgoing::ConnAck {
            session_present,
            reason_code,
            assigned_client_id,
            topic_alias_maximum,
            receive_maximum,
            maximum_packet_size,
        } => {
            let properties = (reason_code == 0).then(|| v5::ConnAckProperties {
                session_expiry_interval: None,
                receive_max: Some(receive_maximum),
                max_qos: None,
                retain_available: None,
                max_packet_size: Some(maximum_packet_size),
                assigned_client_identifier: assigned_client_id,
                topic_alias_max: Some(topic_alias_maximum),
                reason_string: None,
                user_properties: Vec::new(),
                wildcard_subscription_available: None,
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(0),
                server_keep_alive: None,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            });
            v5::Packet::ConnAck(v5::ConnAck {
                session_present,
                code: v5_connack_code(reason_code),
                properties,
            })
        }
        Outgoing::Publish {
            topic,
            payload,
            qos,
            retain,
            packet_id,
        } => {
            let mut publish = v5::Publish::new(topic, qos_to_v5(qos), payload, None);
            publish.retain = retain;
            publish.pkid = packet_id;
            v5::Packet::Publish(publish)
        }
        Outgoing::PubAck {
            packet_id,
            reason_code,
        } => {
            let mut ack = v5::PubAck::new(packet_id, None);
            ack.reason = v5_puback_reason(reason_code);
            v5::Packet::PubAck(ack)
        }
        Outgoing::PubRec {
            packet_id,
            reason_code,
        } => {
            let mut rec = v5::PubRec::new(packet_id, None);
            rec.reason = v5_pubrec_reason(reason_code);
            v5::Packet::PubRec(rec)
        }
        Outgoing::PubComp { packet_id, found } => {
            let mut comp = v5::PubComp::new(packet_id, None);
            if !found {
                comp.reason = v5::PubCompReason::PacketIdentifierNotFound;
            }
            v5::Packet::PubComp(comp)
        }
        Outgoing::SubAck { packet_id, results } => v5::Packet::SubAck(v5::SubAck {
            pkid: packet_id,
            return_codes: results
                .into_iter()
                .map(|result| match result {
                    Ok(qos) => v5::SubscribeReasonCode::Success(qos_to_v5(qos)),
                    Err(0x8F) => v5::SubscribeReasonCode::TopicFilterInvalid,
                    Err(0x9E) => v5::SubscribeReasonCode::SharedSubscriptionsNotSupported,
                    Err(0x87) => v5::SubscribeReasonCode::NotAuthorized,
                    Err(_) => v5::SubscribeReasonCode::Unspecified,
                })
                .collect(),
            properties: None,
        }),
        Outgoing::UnsubAck { packet_id, existed } => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid: packet_id,
            reasons: existed
                .into_iter()
                .map(|existed| {
                    if existed {
                        v5::UnsubAckReason::Success
                    } else {
                        v5::UnsubAckReason::NoSubscriptionExisted
                    }
                })
                .collect(),
            properties: None,
        }),
        Outgoing::PingResp => v5::Packet::PingResp(v5::PingResp),
        Outgoing::Disconnect { reason_code } => {
            // written by hand: rumqttc 0.25 declares remaining length 1 for a reason code
            // without properties but then also writes the property length byte
            buffer.extend_from_slice(&[0xE0, 0x02, v5_disconnect_reason(reason_code) as u8, 0x00]);
            return Ok(());
        }
    };
    packet
        .write(buffer, None)
        .map(|_| ())
        .map_err(|error| error.to_string())
}
