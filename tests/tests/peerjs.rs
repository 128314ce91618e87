//! End-to-end tests of the PeerJS-compatible endpoint (SPEC section 4.1, `[signaling.peerjs]`)
//! against the real `switchboard-signaling` binary: the wire protocol spoken raw by
//! `tests/js/peerjs-driver.mjs` (the `ws` package), the HTTP routes, the limits and checks that
//! go beyond peerjs-server, multi-instance mode through a private `redis-server`, and the real
//! npm `peerjs` client (1.5.x) in two headless Chromium pages calling each other through
//! `switchboard-relay` (`tests/js/peerjs-call.mjs`).

#[path = "common/signaling.rs"]
mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::{
    Ports, RedisServer, Service, free_port, require_tool, signaling_test_config, test_config,
};

/// The key the tests configure (not the default `peerjs`: the configured one must be used).
const KEY: &str = "e2e-key";
const DRIVER: &str = "peerjs-driver.mjs";

/// `signaling_extra` at the top of `[signaling]`, then a `[signaling.peerjs]` table (enabled,
/// key [`KEY`], then `peerjs_extra`) just before `[relay]`.
fn peerjs_config(ports: &Ports, signaling_extra: &str, peerjs_extra: &str) -> String {
    with_peerjs_table(&signaling_test_config(ports, signaling_extra), peerjs_extra)
}

fn with_peerjs_table(config: &str, peerjs_extra: &str) -> String {
    assert!(config.contains("\n[relay]\n"), "{config}");
    config.replacen(
        "\n[relay]\n",
        &format!(
            "\n[signaling.peerjs]\nenabled = true\nkey = \"{KEY}\"\n{peerjs_extra}\n\n[relay]\n"
        ),
        1,
    )
}

/// One signaling instance with the endpoint on.
struct Server {
    svc: Service,
    ports: Ports,
}

impl Server {
    fn start(signaling_extra: &str, peerjs_extra: &str) -> Self {
        let ports = Ports::new();
        let svc = Service::start(
            "switchboard-signaling",
            &peerjs_config(&ports, signaling_extra, peerjs_extra),
        );
        Self { svc, ports }
    }

    fn base(&self) -> String {
        common::base(&self.ports)
    }

    /// Runs a driver scenario (with `key` = [`KEY`] unless `args` names one).
    fn drive(&self, scenario: &str, args: Value) -> Value {
        common::drive_script_at(
            DRIVER,
            &[&self.svc],
            &self.base(),
            scenario,
            &with_key(args),
        )
    }

    fn get(&self, path: &str) -> common::Reply {
        common::http("GET", &format!("{}{path}", self.base()), &[], None)
    }

    fn metrics(&self) -> String {
        let r = common::http(
            "GET",
            &format!("{}/metrics", common::metrics_base(&self.ports)),
            &[],
            None,
        );
        assert_eq!(r.status, 200, "{r:?}");
        r.body.as_str().unwrap_or_default().to_string()
    }

    /// Polls `/metrics` until `series` has the value `want` (bounded); panics with the last
    /// scrape otherwise.
    fn wait_metric(&self, series: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.metrics();
            let got = sample(&text, series);
            if got == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} is {got:?}, want {want}\n--- /metrics ---\n{text}\n--- log ---\n{}",
                self.svc.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn with_key(mut args: Value) -> Value {
    if args.get("key").is_none() {
        args["key"] = json!(KEY);
    }
    args
}

/// The value of the sample `series` (`name` or `name{labels}`) in a Prometheus scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// The sum of every sample of the metric family `name` (any labels).
fn family_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.split_once("} ")?.1
            } else {
                rest.strip_prefix(' ')?
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// A frame reduced to the wire contract's fields.
fn wire(m: &Value) -> Value {
    json!({"type": m["type"], "src": m["src"], "dst": m["dst"], "payload": m["payload"]})
}

fn open() -> Value {
    json!({"type": "OPEN"})
}

/// What a refused registration must look like: an `ERROR` with `msg`, then the server closes.
fn assert_error_and_close(r: &Value, msg: &str, what: &str) {
    assert_eq!(r["handshake"], "upgraded", "{what}: {r}");
    assert_eq!(
        r["first"],
        json!({"type": "ERROR", "payload": {"msg": msg}}),
        "{what}: {r}"
    );
    assert!(r["closed"].is_object(), "{what}: the server closes: {r}");
}

fn assert_id_taken(r: &Value, what: &str) {
    assert_eq!(r["handshake"], "upgraded", "{what}: {r}");
    assert_eq!(
        r["first"],
        json!({"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}}),
        "{what}: {r}"
    );
    assert!(r["closed"].is_object(), "{what}: the server closes: {r}");
}

fn ms(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a duration in ms: {v}"))
}

// ---- HTTP routes ------------------------------------------------------------------------

/// Off by default: without `[signaling.peerjs] enabled = true` nothing answers under `/peerjs`.
#[test]
fn the_endpoint_is_off_unless_enabled() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    for path in ["/peerjs/", "/peerjs/peerjs/id", "/peerjs/peerjs/peers"] {
        let r = common::http("GET", &format!("{}{path}", common::base(&ports)), &[], None);
        assert_eq!(r.status, 404, "{path}: {r:?}\n{}", svc.logs());
    }
}

/// `GET P/` describes the server; `GET P/{key}/id` gives a fresh id as `text/html` (unused:
/// it registers); `GET P/{key}/peers` is 401 without `allow_discovery`; a wrong key is 401.
#[test]
fn the_http_routes_answer_like_peerjs_server() {
    let s = Server::start("", "");
    let info = s.get("/peerjs/");
    assert_eq!(info.status, 200, "{info:?}");
    for field in ["name", "description", "website"] {
        assert!(info.body[field].is_string(), "{field}: {info:?}");
    }
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = s.get(&format!("/peerjs/{KEY}/id"));
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/html")),
            "{r:?}"
        );
        let id = match &r.body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert!(
            !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "a valid peer id: {id:?}"
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "fresh ids");
    let used = s.drive("useId", json!({"id": ids[0]}));
    assert_eq!(used["first"], open(), "the fetched id registers: {used}");

    for path in [
        "/peerjs/wrong-key/id".to_string(),
        format!("/peerjs/{KEY}/peers"),
        "/peerjs/wrong-key/peers".to_string(),
    ] {
        let r = s.get(&path);
        assert_eq!(r.status, 401, "{path}: {r:?}");
    }
}

/// `allow_discovery = true`: `GET P/{key}/peers` lists exactly the connected ids (a wrong key
/// is still 401), and an id leaves the list when its client disconnects.
#[test]
fn with_discovery_on_peers_lists_the_connected_ids() {
    let s = Server::start("", "allow_discovery = true");
    let mut d = common::Staged::spawn_script(DRIVER, &s.base(), "discovery", &with_key(json!({})));
    let logs = || s.svc.logs();
    let stage = d.expect_stage("connected", Duration::from_secs(20), &logs());
    let mut want: Vec<String> = stage["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect();
    want.sort();
    let r = s.get(&format!("/peerjs/{KEY}/peers"));
    assert_eq!(r.status, 200, "{r:?}");
    let mut got: Vec<String> = r
        .body
        .as_array()
        .unwrap_or_else(|| panic!("a JSON array: {r:?}"))
        .iter()
        .map(|v| v.as_str().expect("string id").to_string())
        .collect();
    got.sort();
    assert_eq!(got, want, "{r:?}");
    let wrong = s.get("/peerjs/wrong-key/peers");
    assert_eq!(wrong.status, 401, "{wrong:?}");
    d.command("done");
    d.finish(Duration::from_secs(20), &logs());
    // The driver closed both: the list empties (the close is handled asynchronously: polled).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = s.get(&format!("/peerjs/{KEY}/peers"));
        if r.body == json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "ids stay listed: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---- Wire protocol ----------------------------------------------------------------------

/// OPEN on registration; OFFER, ANSWER, CANDIDATE, LEAVE and EXPIRE are forwarded to `dst` as
/// `{type, src, dst, payload}` in order, with `src` the sender's id whatever it claimed (a
/// forged id, or the recipient's own); HEARTBEAT is forwarded nowhere.
#[test]
fn every_message_type_is_forwarded_with_the_senders_id_as_src() {
    let s = Server::start("", "");
    let r = s.drive("forward", json!({}));
    let (a, b) = (r["a"].clone(), r["b"].clone());
    let b_saw: Vec<Value> = r["bSaw"].as_array().expect("bSaw").clone();
    assert_eq!(b_saw[0], open(), "{r}");
    let mut want: Vec<Value> = ["OFFER", "ANSWER", "CANDIDATE", "LEAVE", "EXPIRE"]
        .iter()
        .enumerate()
        .map(|(n, t)| {
            json!({"type": t, "src": a, "dst": b,
                   "payload": {"n": n, "type": t, "sdp": format!("v=0 {t}")}})
        })
        .collect();
    want.push(json!({"type": "OFFER", "src": a, "dst": b, "payload": {"n": "marker"}}));
    let got: Vec<Value> = b_saw[1..].iter().map(wire).collect();
    assert_eq!(
        got,
        want,
        "exactly these, in order (no HEARTBEAT): {r}\n{}",
        s.svc.logs()
    );
    let a_saw: Vec<Value> = r["aSaw"]
        .as_array()
        .expect("aSaw")
        .iter()
        .map(wire)
        .collect();
    assert_eq!(
        a_saw,
        vec![
            wire(&open()),
            json!({"type": "ANSWER", "src": b, "dst": a, "payload": {"n": "back"}}),
            json!({"type": "CANDIDATE", "src": b, "dst": a, "payload": {"n": "back2"}}),
        ],
        "{r}"
    );
    assert_eq!(r["aOpen"], true, "{r}");
    assert_eq!(r["bOpen"], true, "{r}");
}

/// An id held with another token: `ID-TAKEN` and close, the holder keeps working; once the
/// holder disconnects, the other token may take the id.
#[test]
fn an_id_held_with_another_token_is_taken_and_freed_when_its_holder_leaves() {
    let s = Server::start("", "");
    let r = s.drive("idTaken", json!({}));
    assert_id_taken(&r["thief"], "another token");
    let a_saw: Vec<Value> = r["aSaw"]
        .as_array()
        .expect("aSaw")
        .iter()
        .map(wire)
        .collect();
    assert_eq!(a_saw[0], wire(&open()), "{r}");
    assert_eq!(a_saw.len(), 2, "the holder got only bob's message: {r}");
    assert_eq!(a_saw[1]["payload"]["n"], "still-alice", "{r}");
    let c_saw = r["cSaw"].as_array().expect("cSaw");
    assert_eq!(c_saw[0], open(), "{r}");
    assert_eq!(c_saw[1]["payload"]["n"], "to-new-holder", "{r}");
}

/// The same id with the same token while the first socket is open: the new socket replaces
/// the old one (the old is closed, the new gets no OPEN, messages go to the new), and the old
/// socket's close does not free the id (another token is still ID-TAKEN).
#[test]
fn the_same_id_and_token_replace_the_old_socket_without_open() {
    let s = Server::start("", "");
    let r = s.drive("reconnect", json!({}));
    assert_eq!(r["handshake"], "upgraded", "{r}");
    assert_eq!(
        r["a1Saw"],
        json!([open()]),
        "the old socket got nothing more: {r}"
    );
    assert!(r["a1Closed"].is_object(), "the old socket was closed: {r}");
    let a2: Vec<Value> = r["a2Saw"]
        .as_array()
        .expect("a2Saw")
        .iter()
        .map(wire)
        .collect();
    assert_eq!(
        a2,
        vec![
            json!({"type": "OFFER", "src": r["b"], "dst": r["id"], "payload": {"n": "after-replace"}}),
            json!({"type": "OFFER", "src": r["b"], "dst": r["id"], "payload": {"n": "after-thief"}}),
        ],
        "no OPEN on the replacing socket: {r}"
    );
    assert_eq!(r["a2Open"], true, "{r}");
    assert_id_taken(
        &r["thief"],
        "the id is still held after the old socket closed",
    );
    let b_last = r["bSaw"].as_array().and_then(|a| a.last()).map(wire);
    assert_eq!(
        b_last,
        Some(json!({"type": "ANSWER", "src": r["id"], "dst": r["b"], "payload": {"n": "from-a2"}})),
        "the replacing socket sends as the id: {r}"
    );
}

/// Missing id/token/key, a wrong key, an id too long or outside `[A-Za-z0-9_ -]`, a token too
/// long: each is answered with the peerjs-server `ERROR` and closed. The longest valid id and
/// token register.
#[test]
fn bad_registrations_get_the_peerjs_error_and_are_closed() {
    let s = Server::start("", "");
    let r = s.drive("invalid", json!({}));
    let missing = "No id, token, or key supplied to websocket server";
    for case in ["noId", "emptyId", "noToken", "noKey"] {
        assert_error_and_close(&r[case], missing, case);
    }
    assert_error_and_close(&r["wrongKey"], "Invalid key provided", "wrongKey");
    for case in [
        "longId",
        "slashId",
        "dotId",
        "markupId",
        "unicodeId",
        "longToken",
    ] {
        assert_error_and_close(&r[case], "Invalid id or token", case);
    }
    assert_eq!(r["longestValid"]["first"], open(), "{r}");
    assert_eq!(
        r["longestValid"]["id"].as_str().map(str::len),
        Some(64),
        "{r}"
    );
}

/// OFFER/ANSWER/CANDIDATE to an id not connected are delivered right after its OPEN, in the
/// order sent, with `src` rewritten; LEAVE and EXPIRE to it were dropped.
#[test]
fn messages_to_an_absent_id_are_queued_and_delivered_in_order_after_its_open() {
    let s = Server::start("", "");
    let r = s.drive("queue", json!({}));
    let (a, later) = (r["a"].clone(), r["later"].clone());
    let mut want = vec![wire(&open())];
    for (t, n) in [
        ("OFFER", 0),
        ("CANDIDATE", 1),
        ("CANDIDATE", 2),
        ("ANSWER", 3),
        ("CANDIDATE", 4),
    ] {
        want.push(json!({"type": t, "src": a, "dst": later, "payload": {"n": n}}));
    }
    want.push(json!({"type": "OFFER", "src": a, "dst": later, "payload": {"n": "live"}}));
    let got: Vec<Value> = r["laterSaw"]
        .as_array()
        .expect("laterSaw")
        .iter()
        .map(wire)
        .collect();
    assert_eq!(
        got, want,
        "OPEN, the queue in order, no LEAVE/EXPIRE, then live: {r}"
    );
    assert_eq!(
        r["aSaw"],
        json!([open()]),
        "no EXPIRE for queued messages: {r}"
    );
}

/// A destination's queue holds 64 messages: the 65th is answered with EXPIRE (src = the
/// destination) at once, not after `expire_timeout` (30 s here), and is never delivered.
#[test]
fn a_destination_queue_holds_64_messages_and_the_65th_is_expired_at_once() {
    let s = Server::start("", "expire_timeout = \"30s\"");
    let r = s.drive("queueCap", json!({}));
    assert_eq!(
        wire(&r["expire"]),
        json!({"type": "EXPIRE", "src": r["later"], "dst": r["a"], "payload": null}),
        "{r}"
    );
    assert!(ms(&r["expireMs"]) < 5000, "at once: {r}");
    let saw = r["laterSaw"].as_array().expect("laterSaw");
    assert_eq!(saw[0], open(), "{r}");
    let ns: Vec<Value> = saw[1..].iter().map(|m| m["payload"]["n"].clone()).collect();
    let mut want: Vec<Value> = (0..64).map(|n| json!(n)).collect();
    want.push(json!("live"));
    assert_eq!(ns, want, "the first 64, in order, then live: {r}");
}

/// `expire_timeout = "1s"`: a queue nobody read is dropped after about that long, each waiting
/// sender gets exactly one `EXPIRE` with src = the unreachable id, and the id connecting later
/// gets none of the dropped messages.
#[test]
fn an_unread_queue_expires_after_expire_timeout_and_each_sender_gets_one_expire() {
    let s = Server::start("", "expire_timeout = \"1s\"");
    let r = s.drive("expire", json!({}));
    let ghost = r["ghost"].clone();
    assert_eq!(
        wire(&r["ea"]),
        json!({"type": "EXPIRE", "src": ghost, "dst": r["a"], "payload": null}),
        "{r}"
    );
    assert_eq!(
        wire(&r["eb"]),
        json!({"type": "EXPIRE", "src": ghost, "dst": r["b"], "payload": null}),
        "{r}"
    );
    for key in ["aMs", "bMs"] {
        let t = ms(&r[key]);
        assert!(
            (900..=6000).contains(&t),
            "{key}: {t} ms after sending, want about expire_timeout (1 s): {r}"
        );
    }
    assert_eq!(r["aExpires"], 1, "once per sender, not per message: {r}");
    assert_eq!(r["bExpires"], 1, "{r}");
    let got: Vec<Value> = r["ghostSaw"]
        .as_array()
        .expect("ghostSaw")
        .iter()
        .map(|m| m["payload"]["n"].clone())
        .collect();
    assert_eq!(
        got,
        vec![Value::Null, json!("live")],
        "OPEN then only the live message: {r}"
    );
}

/// `alive_timeout = "2s"`: a client that sends no frame (not even a pong) is closed after
/// about that long and its id freed; a client sending HEARTBEAT outlives several timeouts and
/// still forwards.
#[test]
fn a_silent_client_is_closed_after_alive_timeout_and_its_id_freed() {
    let s = Server::start("", "alive_timeout = \"2s\"");
    let r = s.drive("heartbeat", json!({"aliveMs": 2000}));
    for key in ["silentClosedAfterMs", "againClosedAfterMs"] {
        let t = ms(&r[key]);
        assert!(
            (1800..=7000).contains(&t),
            "{key}: closed {t} ms after connecting, want about alive_timeout (2 s): {r}"
        );
    }
    assert_eq!(r["aliveOpen"], true, "the heartbeating client stays: {r}");
    assert!(
        ms(&r["aliveLivedMs"]) > 3000,
        "the heartbeating client outlived alive_timeout: {r}"
    );
}

/// Bad JSON and unknown types: ignored (the sender stays connected, nothing is forwarded) and
/// counted; the connections gauge follows the clients.
#[test]
fn malformed_and_unknown_frames_are_ignored_counted_and_the_connection_kept() {
    let s = Server::start("", "");
    let gauge = "switchboard_signaling_peerjs_connections";
    let bad_json = "switchboard_signaling_peerjs_dropped_total{reason=\"bad-json\"}";
    let unknown = "switchboard_signaling_peerjs_dropped_total{reason=\"unknown-type\"}";
    s.wait_metric(gauge, 0.0);
    let logs = || s.svc.logs();
    let mut d = common::Staged::spawn_script(DRIVER, &s.base(), "badFrames", &with_key(json!({})));
    d.expect_stage("connected", Duration::from_secs(20), &logs());
    s.wait_metric(gauge, 2.0);
    let before = s.metrics();
    d.command("go");
    let r = d.expect_stage("ignored", Duration::from_secs(20), &logs());
    assert_eq!(r["aOpen"], true, "{r}");
    let b_saw: Vec<Value> = r["bSaw"]
        .as_array()
        .expect("bSaw")
        .iter()
        .map(wire)
        .collect();
    assert_eq!(b_saw.len(), 2, "OPEN and the good message only: {r}");
    assert_eq!(b_saw[1]["payload"]["n"], "after", "{r}");
    assert_eq!(
        r["aSaw"],
        json!([open()]),
        "the sender got no error frame: {r}"
    );
    let b0 = sample(&before, bad_json).unwrap_or(0.0);
    let u0 = sample(&before, unknown).unwrap_or(0.0);
    s.wait_metric(bad_json, b0 + 2.0);
    s.wait_metric(unknown, u0 + 3.0);
    d.command("close");
    d.finish(Duration::from_secs(20), &logs());
    s.wait_metric(gauge, 0.0);
}

/// `max_payload_bytes = 4096`: a frame of about that size is forwarded; one over
/// 2 × 4096 + 4 KiB closes that connection, and the others keep working.
#[test]
fn an_oversized_frame_closes_only_that_connection() {
    let s = Server::start("max_payload_bytes = 4096", "");
    let r = s.drive("oversized", json!({"fits": 3500, "huge": 14000}));
    assert!(r["closed"].is_object(), "{r}");
    let ns: Vec<Value> = r["bSaw"]
        .as_array()
        .expect("bSaw")
        .iter()
        .map(|m| m["n"].clone())
        .collect();
    assert_eq!(
        ns,
        vec![Value::Null, json!("fits"), json!("others-fine")],
        "the huge frame was not forwarded: {r}"
    );
    assert_eq!(r["bOpen"], true, "{r}");
    assert_eq!(r["cOpen"], true, "{r}");
}

/// `concurrent_limit = 2`: a third id gets the peerjs-server error and is closed; replacing a
/// socket (same id and token) is not a new client; once one leaves, a new id registers.
#[test]
fn the_concurrent_limit_refuses_new_ids_but_not_a_replacement() {
    let s = Server::start("", "concurrent_limit = 2");
    let r = s.drive("concurrent", json!({}));
    assert_error_and_close(
        &r["third"],
        "Server has reached its concurrent user limit",
        "third id",
    );
    assert_eq!(r["replaceHandshake"], "upgraded", "{r}");
    let a2: Vec<Value> = r["a2Saw"]
        .as_array()
        .expect("a2Saw")
        .iter()
        .map(|m| m["payload"]["n"].clone())
        .collect();
    assert_eq!(
        a2,
        vec![json!("to-a2")],
        "the replacement works at the limit: {r}"
    );
    assert_eq!(r["dFirst"], open(), "{r}");
}

/// A WebSocket upgrade with an `Origin` outside `cors_origins` is refused with HTTP 403 and
/// never upgraded; a listed origin and no Origin at all (non-browser clients) register.
#[test]
fn an_origin_outside_cors_origins_is_refused_before_the_upgrade() {
    let s = Server::start("", "");
    let r = s.drive("origin", json!({"allowed": s.base()}));
    assert_eq!(r["evilHandshake"]["status"], 403, "{r}");
    assert_eq!(r["evilSaw"], json!([]), "{r}");
    assert_eq!(r["goodFirst"], open(), "{r}");
    assert_eq!(r["noneFirst"], open(), "{r}");
}

/// `signaling.max_connections_per_ip = 3` counts PeerJS and Socket.IO connections together:
/// two PeerJS + one Socket.IO fill it, a third PeerJS upgrade is 429 and a second Socket.IO
/// connect refused; another source address still gets in; closing one makes room.
#[test]
fn the_per_ip_connection_cap_counts_peerjs_and_socketio_together() {
    let s = Server::start("max_connections_per_ip = 3", "");
    let r = s.drive("perIp", json!({}));
    assert_eq!(r["overHandshake"]["status"], 429, "{r}");
    assert!(
        r["sioOver"]
            .as_str()
            .is_some_and(|v| v.starts_with("refused")),
        "{r}"
    );
    assert_eq!(r["elsewhereFirst"], open(), "{r}");
    assert_eq!(r["backFirst"], open(), "{r}");
    assert_eq!(r["p2Open"], true, "{r}");
}

/// Per-socket rate limit (`rate_limit_per_second = 2`, `rate_limit_burst = 5`): a burst of 30
/// gets about the burst through, in order; every other message is answered with EXPIRE for
/// its dst and counted (the counter equals the EXPIREs the sender got); the sender stays
/// connected and, once the bucket refills, gets through.
#[test]
fn over_the_rate_limit_messages_are_dropped_and_answered_with_expire() {
    let s = Server::start("rate_limit_per_second = 2\nrate_limit_burst = 5", "");
    let total = 30;
    let r = s.drive("rateLimit", json!({"total": total}));
    let delivered = r["delivered"].as_u64().expect("delivered");
    let expired = r["expired"].as_u64().expect("expired");
    assert_eq!(
        delivered + expired,
        total,
        "delivered or answered, exactly once each: {r}"
    );
    assert!(
        (5..=10).contains(&delivered),
        "about the burst gets through: {r}"
    );
    let order: Vec<u64> = r["deliveredOrder"]
        .as_array()
        .expect("order")
        .iter()
        .map(|v| v.as_u64().expect("n"))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {r}");
    for e in r["expires"].as_array().expect("expires") {
        assert_eq!(
            wire(e),
            json!({"type": "EXPIRE", "src": r["b"], "dst": r["a"], "payload": null}),
            "{r}"
        );
    }
    assert!(
        r["later"].is_string(),
        "the bucket refills and a later message goes through: {r}"
    );
    assert_eq!(r["aOpen"], true, "{r}");
    #[allow(clippy::cast_precision_loss)]
    s.wait_metric(
        "switchboard_signaling_peerjs_dropped_total{reason=\"rate-limited\"}",
        r["expiredTotal"].as_u64().expect("expiredTotal") as f64,
    );
}

const TOKEN: &str = "peerjs-client-token-0123456789";

/// `auth = "token"`: the PeerJS `key` must be a valid bearer token (the configured key no
/// longer opens the door) on the WebSocket and on the HTTP routes; the token is not logged.
#[test]
fn with_token_auth_the_peerjs_key_must_be_a_valid_token() {
    let s = Server::start(
        &format!("auth = \"token\"\ntokens = [\"{TOKEN}\"]"),
        "allow_discovery = true",
    );
    let r = s.drive(
        "authKey",
        json!({"token": TOKEN, "key": TOKEN, "configuredKey": KEY}),
    );
    assert_eq!(r["aFirst"], open(), "{r}");
    assert_eq!(r["bSaw"][1]["payload"]["n"], "authed", "{r}");
    assert_error_and_close(
        &r["configuredKey"],
        "Invalid key provided",
        "the configured key",
    );
    assert_error_and_close(&r["wrong"], "Invalid key provided", "a wrong token");
    let id = s.get(&format!("/peerjs/{TOKEN}/id"));
    assert_eq!(id.status, 200, "{id:?}");
    let peers = s.get(&format!("/peerjs/{TOKEN}/peers"));
    assert_eq!(peers.status, 200, "{peers:?}");
    for path in [
        format!("/peerjs/{KEY}/id"),
        "/peerjs/not-a-token/id".to_string(),
        format!("/peerjs/{KEY}/peers"),
        "/peerjs/not-a-token/peers".to_string(),
    ] {
        let r = s.get(&path);
        assert_eq!(r.status, 401, "{path}: {r:?}");
    }
    let logs = s.svc.logs();
    assert!(!logs.contains(TOKEN), "the token is never logged:\n{logs}");
}

// ---- Multi-instance ---------------------------------------------------------------------

/// A Redis and two instances with the endpoint on, one key prefix.
struct Cluster {
    // Dropped in this order: the instances, then Redis.
    nodes: Vec<Service>,
    ports: Vec<Ports>,
    _redis: RedisServer,
}

impl Cluster {
    fn start(name: &str, peerjs_extra: &str) -> Self {
        let _ = require_tool("redis-server");
        let redis = RedisServer::start();
        let keys = common::cluster_extra(&redis.url(), &common::unique_prefix(name), "");
        let ports: Vec<Ports> = (0..2).map(|_| Ports::new()).collect();
        let nodes = ports
            .iter()
            .map(|p| {
                Service::start(
                    "switchboard-signaling",
                    &peerjs_config(p, &keys, peerjs_extra),
                )
            })
            .collect();
        Self {
            nodes,
            ports,
            _redis: redis,
        }
    }

    fn drive(&self, scenario: &str, args: Value) -> Value {
        let nodes: Vec<&Service> = self.nodes.iter().collect();
        let urls = common::bases(&self.ports.iter().collect::<Vec<_>>());
        common::drive_script_at(DRIVER, &nodes, &urls, scenario, &with_key(args))
    }
}

/// Peers on two instances: every type is forwarded across with `src` rewritten, in order;
/// an id held on one instance is ID-TAKEN on the other; once released there, the other
/// instance lets another token take it.
#[test]
fn peers_on_two_instances_reach_each_other_and_ids_are_cluster_wide() {
    let c = Cluster::start("pjforward", "");
    let r = c.drive("clusterForward", json!({}));
    let (a, b) = (r["a"].clone(), r["b"].clone());
    let got: Vec<Value> = r["bSaw"].as_array().expect("bSaw")[1..]
        .iter()
        .map(wire)
        .collect();
    let want: Vec<Value> = [
        "OFFER",
        "CANDIDATE",
        "CANDIDATE",
        "ANSWER",
        "LEAVE",
        "EXPIRE",
    ]
    .iter()
    .enumerate()
    .map(|(n, t)| json!({"type": t, "src": a, "dst": b, "payload": {"n": n}}))
    .collect();
    assert_eq!(got, want, "{r}");
    assert_eq!(
        wire(&r["aSaw"][1]),
        json!({"type": "ANSWER", "src": b, "dst": a, "payload": {"n": "back"}}),
        "{r}"
    );
    assert_id_taken(&r["thief"], "the id is held on the other instance");
    assert_eq!(r["a2Saw"][0], open(), "{r}");
    assert_eq!(r["a2Saw"][1]["payload"]["n"], "new-holder", "{r}");
}

/// Messages for an id connected nowhere, sent through instance 0, are delivered in order right
/// after its OPEN when it connects on instance 1.
#[test]
fn a_message_queued_on_one_instance_is_delivered_when_the_id_connects_on_another() {
    let c = Cluster::start("pjqueue", "expire_timeout = \"30s\"");
    let r = c.drive("clusterQueue", json!({}));
    let (a, later) = (r["a"].clone(), r["later"].clone());
    let mut want = vec![wire(&open())];
    for n in 0..4 {
        let t = if n == 0 { "OFFER" } else { "CANDIDATE" };
        want.push(json!({"type": t, "src": a, "dst": later, "payload": {"n": n}}));
    }
    want.push(json!({"type": "OFFER", "src": a, "dst": later, "payload": {"n": "live"}}));
    let got: Vec<Value> = r["laterSaw"]
        .as_array()
        .expect("laterSaw")
        .iter()
        .map(wire)
        .collect();
    assert_eq!(got, want, "{r}");
}

/// In a cluster a queue for an id connected nowhere still expires: the sender gets EXPIRE
/// after about `expire_timeout`.
#[test]
fn a_message_for_an_id_connected_nowhere_expires_in_a_cluster() {
    let c = Cluster::start("pjexpire", "expire_timeout = \"1s\"");
    let r = c.drive("clusterExpire", json!({}));
    assert_eq!(
        wire(&r["expire"]),
        json!({"type": "EXPIRE", "src": r["ghost"], "dst": r["a"], "payload": null}),
        "{r}"
    );
    let t = ms(&r["ms"]);
    assert!((900..=8000).contains(&t), "{t} ms: {r}");
}

// ---- The real peerjs client in Chromium -------------------------------------------------

/// Two headless Chromium pages, served from their own loopback origin (listed in
/// `cors_origins`), load the npm `peerjs` 1.5.x bundle and register on our endpoint with a
/// custom key; a third Peer claiming one of their ids gets `unavailable-id`; a DataConnection
/// carries messages both ways and a MediaConnection shows the fake camera on both sides, all
/// relay-only with TURN credentials from `/api/ice-servers`: every peer connection's selected
/// pair has a relay local candidate, and the relay's counters moved.
#[test]
fn two_browsers_with_the_npm_peerjs_client_exchange_data_and_media_through_the_relay() {
    browser_call(false);
}

/// The same call with the two pages registered on two instances sharing one Redis: ids are
/// cluster-wide (the third Peer claiming bob's id, from alice's instance, is refused), and
/// every signaling message between the browsers crosses instances.
#[test]
fn two_browsers_on_two_instances_connect_through_redis() {
    browser_call(true);
}

fn browser_call(cluster: bool) {
    let node = require_tool("node");
    let _ = require_tool("chromium");
    let js = common::js_path("");
    assert!(
        js.join("node_modules/playwright-core").is_dir() && js.join("node_modules/peerjs").is_dir(),
        "tests/js/node_modules is missing: run `npm ci` in tests/js (scripts/test.sh does)"
    );
    let ports = Ports::new();
    let page_port = free_port();
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let config = with_peerjs_table(
        &test_config(&ports, "")
            .replace(
                "public_host = \"127.0.0.1\"",
                "public_host = \"127.0.0.1\"\nadvertise = [\"turn-udp\"]",
            )
            .replace(
                "cors_origins = [",
                &format!("cors_origins = [\"{page_origin}\", "),
            ),
        "",
    );
    assert!(config.contains(&page_origin), "{config}");
    let redis = cluster.then(RedisServer::start);
    let config = match &redis {
        Some(r) => config.replacen(
            "[signaling]\n",
            &format!(
                "[signaling]\nredis_url = \"{}\"\nredis_prefix = \"{}\"\n",
                r.url(),
                common::unique_prefix("pjcall")
            ),
            1,
        ),
        None => config,
    };
    let relay = Service::start("switchboard-relay", &config);
    let signaling = Service::start("switchboard-signaling", &config);
    // The second instance: the same file but its own signaling ports (the same relay).
    let ports2 = Ports::new();
    let second = cluster.then(|| {
        let c = config
            .replace(
                &format!("127.0.0.1:{}", ports.signaling),
                &format!("127.0.0.1:{}", ports2.signaling),
            )
            .replace(
                &format!("127.0.0.1:{}", ports.signaling_metrics),
                &format!("127.0.0.1:{}", ports2.signaling_metrics),
            );
        Service::start("switchboard-signaling", &c)
    });
    let logs = || {
        format!(
            "--- relay ---\n{}\n--- signaling ---\n{}\n--- second signaling ---\n{}",
            relay.logs(),
            signaling.logs(),
            second.as_ref().map(Service::logs).unwrap_or_default()
        )
    };
    let relay_metrics = || {
        let r = common::http(
            "GET",
            &format!("http://127.0.0.1:{}/metrics", ports.metrics),
            &[],
            None,
        );
        r.body.as_str().unwrap_or_default().to_string()
    };
    let bytes_before = family_sum(&relay_metrics(), "switchboard_relay_relayed_bytes_total");

    let mut cmd = std::process::Command::new(node);
    cmd.arg(js.join("peerjs-call.mjs"))
        .args(["--sig", &common::base(&ports)]);
    if cluster {
        cmd.args(["--sig2", &common::base(&ports2)]);
    }
    let out = cmd
        .args(["--page-port", &page_port.to_string()])
        .args(["--key", KEY, "--path", "/peerjs"])
        .current_dir(&js)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert!(
        out.status.success() && r["ok"] == true,
        "the peerjs call failed: {r}\n--- node stderr ---\n{stderr}\n{}",
        logs()
    );
    assert!(
        r["turnUrls"].as_array().is_some_and(|u| !u.is_empty()),
        "TURN servers from /api/ice-servers: {r}"
    );
    assert_eq!(r["probe"], "unavailable-id", "{r}");
    let pages = r["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 2, "{r}");
    let mut a_got: Vec<String> = pages[0]["received"]
        .as_array()
        .expect("received")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    a_got.sort();
    assert_eq!(
        a_got,
        [
            "hello from bob",
            "pong:ping-1",
            "pong:ping-2",
            "pong:ping-3"
        ],
        "{r}"
    );
    assert_eq!(
        pages[1]["received"],
        json!(["ping-1", "ping-2", "ping-3"]),
        "{r}"
    );
    for p in pages {
        for conn in ["data", "media"] {
            let s = &p[conn];
            assert_eq!(s["localCandidateType"], "relay", "{conn}: {p}");
            assert_eq!(s["relayProtocol"], "udp", "{conn}: {p}");
            assert!(s["bytesSent"].as_u64().unwrap_or(0) > 0, "{conn}: {p}");
            assert!(s["bytesReceived"].as_u64().unwrap_or(0) > 0, "{conn}: {p}");
        }
        assert!(p["media"]["framesDecoded"].as_u64().unwrap_or(0) > 0, "{p}");
    }
    if cluster {
        // Every signaling message between the pages crossed instances, both ways.
        for p in [&ports, &ports2] {
            let m = common::http(
                "GET",
                &format!("{}/metrics", common::metrics_base(p)),
                &[],
                None,
            );
            let text = m.body.as_str().unwrap_or_default().to_string();
            let crossed = family_sum(&text, "switchboard_signaling_cluster_events_in_total");
            assert!(
                crossed > 0.0,
                "no event crossed into {}: {text}\n{}",
                p.signaling,
                logs()
            );
        }
    }
    let bytes_after = family_sum(&relay_metrics(), "switchboard_relay_relayed_bytes_total");
    assert!(
        bytes_after > bytes_before,
        "the relay carried the call: {bytes_before} -> {bytes_after}\n{}",
        logs()
    );
}
