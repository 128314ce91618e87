//! Engine.IO v4 / Socket.IO v5 text packets as the native WebSocket transport
//! ([`super::native`]) reads and writes them. Pure functions, no I/O.
//!
//! A WebSocket text message is one Engine.IO packet: a type digit and its data
//! (`0` open, `1` close, `2` ping, `3` pong, `4` message, `6` noop). A message carries one
//! Socket.IO packet: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`, where the
//! namespace, when not `/`, starts with `/` and ends at `,`.

use std::fmt::Write as _;

use serde::Serialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;

/// One Engine.IO packet from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Close,
    Ping,
    Pong,
    Noop,
    Message(Sio<'a>),
    /// Not an Engine.IO v4 packet.
    Invalid,
}

/// One Socket.IO packet from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Sio<'a> {
    /// `0`: joins a namespace; `auth` is the raw JSON object, if any.
    Connect { nsp: &'a str, auth: Option<&'a str> },
    /// `1`: leaves a namespace.
    Disconnect { nsp: &'a str },
    /// `2`: an event; `args` is the raw JSON array (`["name", data, ...]`).
    Event {
        nsp: &'a str,
        ack_id: Option<i64>,
        args: &'a str,
    },
    /// `3`: the client acknowledges an event of ours (we never ask for one).
    Ack,
    /// `5`/`6`: an event or ack with binary attachments (sent as `attachments` binary
    /// WebSocket messages after this one).
    Binary { attachments: usize },
    /// `4` (only servers send CONNECT_ERROR) or anything unparseable.
    Invalid,
}

/// Parses one text WebSocket message.
#[must_use]
pub fn parse(text: &str) -> Frame<'_> {
    let mut chars = text.chars();
    let Some(kind) = chars.next() else {
        return Frame::Invalid;
    };
    let rest = chars.as_str();
    match kind {
        '1' => Frame::Close,
        '2' => Frame::Ping,
        '3' => Frame::Pong,
        '6' => Frame::Noop,
        '4' => Frame::Message(parse_sio(rest)),
        _ => Frame::Invalid,
    }
}

fn parse_sio(p: &str) -> Sio<'_> {
    let Some(kind) = p.as_bytes().first().copied() else {
        return Sio::Invalid;
    };
    let mut rest = &p[1..];
    if kind == b'5' || kind == b'6' {
        let Some((n, _)) = rest.split_once('-') else {
            return Sio::Invalid;
        };
        return match n.parse::<usize>() {
            Ok(attachments) => Sio::Binary { attachments },
            _ => Sio::Invalid,
        };
    }
    let nsp = if rest.starts_with('/') {
        match rest.split_once(',') {
            Some((nsp, tail)) => {
                rest = tail;
                nsp
            }
            None => {
                let nsp = rest;
                rest = "";
                nsp
            }
        }
    } else {
        "/"
    };
    match kind {
        b'0' => Sio::Connect {
            nsp,
            auth: (!rest.is_empty()).then_some(rest),
        },
        b'1' => Sio::Disconnect { nsp },
        b'2' => {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (id, args) = rest.split_at(digits);
            let ack_id = if id.is_empty() {
                None
            } else {
                match id.parse::<i64>() {
                    Ok(id) => Some(id),
                    Err(_) => return Sio::Invalid,
                }
            };
            if args.is_empty() {
                return Sio::Invalid;
            }
            Sio::Event { nsp, ack_id, args }
        }
        b'3' => Sio::Ack,
        _ => Sio::Invalid,
    }
}

/// The arguments of an event, as socketioxide hands them to a `TryData<Value>` handler:
/// the name (the first element, `""` when it is not a string) and the first argument after
/// it (`None` when there is none); further arguments are ignored.
#[derive(Debug, PartialEq)]
pub struct EventArgs {
    pub name: String,
    pub data: Option<Value>,
}

/// Decodes the JSON array of an event; `Err` when it is not a JSON array.
pub fn event_args(args: &str) -> Result<EventArgs, serde_json::Error> {
    serde_json::from_str(args)
}

impl<'de> de::Deserialize<'de> for EventArgs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventArgs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of an event name and its data")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventArgs, A::Error> {
                let name = match seq.next_element::<Value>()? {
                    Some(Value::String(s)) => s,
                    _ => String::new(),
                };
                let data = seq.next_element::<Value>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(EventArgs { name, data })
            }
        }
        d.deserialize_seq(V)
    }
}

/// `0{...}`: the Engine.IO open packet of a WebSocket session (no upgrades to offer).
#[must_use]
pub fn open(
    sid: &str,
    ping_interval_ms: u128,
    ping_timeout_ms: u128,
    max_payload: usize,
) -> String {
    format!(
        r#"0{{"sid":"{sid}","upgrades":[],"pingInterval":{ping_interval_ms},"pingTimeout":{ping_timeout_ms},"maxPayload":{max_payload}}}"#
    )
}

/// `40{"sid":...}`: the namespace `/` is joined.
#[must_use]
pub fn connected(sid: &str) -> String {
    format!(r#"40{{"sid":"{sid}"}}"#)
}

/// `44[<nsp>,]{"message":...}`: the CONNECT is refused.
#[must_use]
pub fn connect_error(nsp: &str, message: &str) -> String {
    let body = serde_json::json!({ "message": message });
    if nsp == "/" {
        format!("44{body}")
    } else {
        format!("44{nsp},{body}")
    }
}

/// `41`: the server ends the Socket.IO session (clients see "io server disconnect").
pub const DISCONNECT: &str = "41";
/// `2`: the server's heartbeat.
pub const PING: &str = "2";
/// `3`: the answer to a client's ping.
pub const PONG: &str = "3";

/// `42["<event>",<body>]`.
pub fn event<T: Serialize + ?Sized>(event: &str, body: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"42[");
    serde_json::to_writer(&mut out, event)?;
    out.push(b',');
    serde_json::to_writer(&mut out, body)?;
    out.push(b']');
    // serde_json writes valid UTF-8.
    String::from_utf8(out).map_err(|e| de::Error::custom(e.to_string()))
}

/// `43<id>[<body>]`.
pub fn ack<T: Serialize + ?Sized>(ack_id: i64, body: &T) -> Result<String, serde_json::Error> {
    let mut head = String::with_capacity(24);
    let _ = write!(head, "43{ack_id}[");
    let mut out = head.into_bytes();
    serde_json::to_writer(&mut out, body)?;
    out.push(b']');
    String::from_utf8(out).map_err(|e| de::Error::custom(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_io_packets() {
        assert_eq!(parse("1"), Frame::Close);
        assert_eq!(parse("2"), Frame::Ping);
        assert_eq!(parse("3"), Frame::Pong);
        assert_eq!(parse("6"), Frame::Noop);
        assert_eq!(parse(""), Frame::Invalid);
        assert_eq!(parse("0"), Frame::Invalid, "only servers open");
        assert_eq!(parse("x"), Frame::Invalid);
        assert_eq!(parse("é"), Frame::Invalid);
    }

    #[test]
    fn connect_with_and_without_auth_and_namespace() {
        assert_eq!(
            parse("40"),
            Frame::Message(Sio::Connect {
                nsp: "/",
                auth: None
            })
        );
        assert_eq!(
            parse(r#"40{"token":"t"}"#),
            Frame::Message(Sio::Connect {
                nsp: "/",
                auth: Some(r#"{"token":"t"}"#)
            })
        );
        assert_eq!(
            parse(r#"40/admin,{"a":1}"#),
            Frame::Message(Sio::Connect {
                nsp: "/admin",
                auth: Some(r#"{"a":1}"#)
            })
        );
        assert_eq!(
            parse("40/admin"),
            Frame::Message(Sio::Connect {
                nsp: "/admin",
                auth: None
            })
        );
        assert_eq!(parse("41"), Frame::Message(Sio::Disconnect { nsp: "/" }));
    }

    #[test]
    fn events_with_and_without_ack_ids() {
        assert_eq!(
            parse(r#"42["signal",{"to":"x"}]"#),
            Frame::Message(Sio::Event {
                nsp: "/",
                ack_id: None,
                args: r#"["signal",{"to":"x"}]"#
            })
        );
        assert_eq!(
            parse(r#"4217["join-room",{}]"#),
            Frame::Message(Sio::Event {
                nsp: "/",
                ack_id: Some(17),
                args: r#"["join-room",{}]"#
            })
        );
        assert_eq!(
            parse(r#"42/x,3["a"]"#),
            Frame::Message(Sio::Event {
                nsp: "/x",
                ack_id: Some(3),
                args: r#"["a"]"#
            })
        );
        assert_eq!(parse("42"), Frame::Message(Sio::Invalid), "no arguments");
        assert_eq!(
            parse("4299999999999999999999[\"a\"]"),
            Frame::Message(Sio::Invalid),
            "ack id beyond i64"
        );
        assert_eq!(
            parse(r#"451-["a",{"_placeholder":true,"num":0}]"#),
            Frame::Message(Sio::Binary { attachments: 1 })
        );
        assert_eq!(parse("45x-[]"), Frame::Message(Sio::Invalid));
        assert_eq!(parse("44{}"), Frame::Message(Sio::Invalid));
        assert_eq!(parse("4"), Frame::Message(Sio::Invalid));
    }

    #[test]
    fn event_arguments_like_socketioxide() {
        let a = event_args(r#"["signal",{"to":"x"},"extra"]"#).expect("array");
        assert_eq!(a.name, "signal");
        assert_eq!(a.data, Some(json!({"to": "x"})));
        let a = event_args(r#"["leave-room"]"#).expect("array");
        assert_eq!(a.data, None);
        let a = event_args("[5, 1]").expect("array");
        assert_eq!(a.name, "", "a name that is not a string is unknown");
        assert!(event_args(r#"{"a":1}"#).is_err());
        assert!(event_args(r#"["a","#).is_err());
    }

    #[test]
    fn server_packets() {
        assert_eq!(
            open("abc", 25_000, 20_000, 1000),
            r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000}"#
        );
        assert_eq!(connected("s1"), r#"40{"sid":"s1"}"#);
        assert_eq!(
            connect_error("/", "unauthorized"),
            r#"44{"message":"unauthorized"}"#
        );
        assert_eq!(
            connect_error("/x", "Invalid namespace"),
            r#"44/x,{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            event("peer-joined", &json!({"id": "a\"b"})).expect("encodes"),
            r#"42["peer-joined",{"id":"a\"b"}]"#
        );
        assert_eq!(
            ack(7, &json!({"ok": true})).expect("encodes"),
            r#"437[{"ok":true}]"#
        );
    }
}
