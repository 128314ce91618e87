//! End-to-end tests of multi-instance signaling (SPEC section 4, "Multi-instance"): several
//! real `switchboard-signaling` processes sharing one private `redis-server`, driven by
//! socket.io-client under Node with clients spread over the instances. Each test starts its
//! own Redis and instances, with a Redis key prefix of its own.
//!
//! Bounds the implementation states: an instance heartbeats every 1 s with a 10 s
//! registration TTL and reaps every 1 s, so a dead instance's peers are gone from the others'
//! view within 15 s.

#[path = "common/signaling.rs"]
mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_tests::{Ports, RedisServer, Service, require_tool};

const ADMIN: &str = "admin-test-token-0123456789";

/// How long after a kill -9 the survivors must have been told (SPEC: "within a stated bound").
const DEAD_INSTANCE_BOUND: Duration = Duration::from_secs(15);

fn code(ack: &Value) -> &str {
    ack["error"]["code"].as_str().unwrap_or("<none>")
}

fn assert_ok(ack: &Value, what: &str) {
    assert_eq!(ack["ok"], json!(true), "{what}: {ack}");
}

fn assert_code(ack: &Value, expected: &str, what: &str) {
    assert_eq!(ack["ok"], json!(false), "{what}: {ack}");
    assert_eq!(code(ack), expected, "{what}: {ack}");
    assert!(ack["error"]["message"].is_string(), "{what}: {ack}");
}

/// A Redis and `n` signaling instances configured with its URL and one key prefix.
struct Cluster {
    // Dropped in this order: the instances, then Redis.
    nodes: Vec<Service>,
    ports: Vec<Ports>,
    redis: RedisServer,
}

impl Cluster {
    /// `extra`: more `[signaling]` keys for every instance.
    fn start(name: &str, n: usize, extra: &str) -> Self {
        let _ = require_tool("redis-server");
        let redis = RedisServer::start();
        let prefix = common::unique_prefix(name);
        let keys = common::cluster_extra(&redis.url(), &prefix, extra);
        let ports: Vec<Ports> = (0..n).map(|_| Ports::new()).collect();
        let nodes = ports.iter().map(|p| common::start(p, &keys)).collect();
        Self {
            nodes,
            ports,
            redis,
        }
    }

    /// Every instance's base URL, comma-separated (the driver's URL argument).
    fn urls(&self) -> String {
        common::bases(&self.ports.iter().collect::<Vec<_>>())
    }

    fn base(&self, i: usize) -> String {
        common::base(&self.ports[i])
    }

    fn metrics_bases(&self) -> Vec<String> {
        self.ports.iter().map(common::metrics_base).collect()
    }

    /// Every instance's log and Redis's, for a failure message.
    fn logs(&self) -> String {
        format!(
            "{}\n--- redis log ---\n{}",
            common::all_logs(&self.nodes.iter().collect::<Vec<_>>()),
            self.redis.logs()
        )
    }

    /// Runs a scenario with its clients spread over every instance.
    fn drive(&self, scenario: &str, args: &Value) -> Value {
        common::drive_at(
            &self.nodes.iter().collect::<Vec<_>>(),
            &self.urls(),
            scenario,
            args,
        )
    }

    /// `GET path` on instance `i`.
    fn get(&self, i: usize, path: &str, headers: &[(&str, &str)]) -> common::Reply {
        common::http("GET", &format!("{}{path}", self.base(i)), headers, None)
    }

    /// Polls `GET /ready` on every instance listed until each answers `want` (deadline for
    /// each); panics with the logs otherwise.
    fn wait_ready_status(&self, instances: &[usize], want: u16, deadline: Duration, why: &str) {
        for &i in instances {
            let url = format!("{}/ready", self.base(i));
            if let Err(last) = common::poll_status(&url, want, deadline) {
                panic!(
                    "{why}: instance {i}'s /ready did not answer {want} within {deadline:?} \
                     (last: {last:?})\n{}",
                    self.logs()
                );
            }
        }
    }
}

/// The peer ids (`peerId`) in a JSON array of peer objects, sorted.
fn peer_ids(peers: &Value) -> Vec<String> {
    let mut ids: Vec<String> = peers
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["peerId"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn sorted(ids: &[&Value]) -> Vec<String> {
    let mut v: Vec<String> = ids
        .iter()
        .map(|id| id.as_str().expect("a peer id").to_string())
        .collect();
    v.sort();
    v
}

fn cluster_join(n: usize, transport_b: &str) {
    let cluster = Cluster::start(
        &format!("join{n}{transport_b}"),
        n,
        &format!("admin_token = \"{ADMIN}\""),
    );
    let r = cluster.drive(
        "clusterJoin",
        &json!({"admin": ADMIN, "transportB": transport_b}),
    );
    let (a, b, c) = (&r["ids"]["a"], &r["ids"]["b"], &r["ids"]["c"]);
    let distinct: std::collections::BTreeSet<String> = r["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(Value::to_string)
        .collect();
    assert_eq!(
        distinct.len(),
        n.min(3),
        "clients spread over the instances: {r}"
    );
    assert_eq!(
        r["instances"][0].as_str().unwrap_or_default(),
        cluster.base(0),
        "{r}"
    );
    assert_ne!(r["instances"][0], r["instances"][1], "{r}");

    // Joins: the earlier peers are seen in the ack, room-users and user-joined cross instances.
    assert_ok(&r["joinA"], "join A");
    assert_eq!(r["joinA"]["peers"], json!([]), "{r}");
    assert_eq!(r["joinA"]["polite"], json!(false), "{r}");
    assert_ok(&r["joinB"], "join B");
    assert_eq!(r["joinB"]["polite"], json!(true), "{r}");
    assert_eq!(peer_ids(&r["joinB"]["peers"]), sorted(&[a]), "{r}");
    let ann = &r["joinB"]["peers"][0];
    assert_eq!(ann["userId"], "ann", "{r}");
    assert_eq!(ann["displayName"], "Ann", "{r}");
    assert_eq!(ann["metadata"], json!({"role": "host"}), "{r}");
    assert!(ann["joinedAt"].is_u64(), "{r}");
    assert_eq!(peer_ids(&r["roomUsersB"]["users"]), sorted(&[a, b]), "{r}");
    assert_eq!(r["bJoinedAtA"]["roomId"], "cluster", "{r}");
    assert_eq!(r["bJoinedAtA"]["peer"]["peerId"], *b, "{r}");
    assert_eq!(r["bJoinedAtA"]["peer"]["userId"], "bob", "{r}");
    assert_eq!(r["bJoinedAtA"]["peer"]["displayName"], "Bob", "{r}");
    assert_ok(&r["joinC"], "join C");
    assert_eq!(peer_ids(&r["joinC"]["peers"]), sorted(&[a, b]), "{r}");
    assert_eq!(
        peer_ids(&r["roomUsersC"]["users"]),
        sorted(&[a, b, c]),
        "{r}"
    );
    assert_eq!(r["cJoinedAtA"]["peer"]["peerId"], *c, "{r}");
    assert_eq!(r["cJoinedAtB"]["peer"]["peerId"], *c, "{r}");

    // Every relayed event type crosses, both ways, with the server-set `from`.
    for (dir, from, to) in [("ab", a, b), ("ba", b, a)] {
        let d = &r["relay"][dir];
        for ack in [
            "offerAck",
            "answerAck",
            "candidateAck",
            "signalAck",
            "messageAck",
            "updateAck",
        ] {
            assert_ok(&d[ack], &format!("{dir} {ack}"));
        }
        assert_eq!(d["offer"]["from"], *from, "{dir}: {d}");
        assert_eq!(d["offer"]["targetId"], *to, "{dir}: {d}");
        assert_eq!(
            d["offer"]["offer"],
            json!({"type": "offer", "sdp": format!("offer-{dir}")}),
            "{dir}: {d}"
        );
        assert_eq!(d["answer"]["from"], *from, "{dir}: {d}");
        assert_eq!(d["answer"]["answer"]["type"], "answer", "{dir}: {d}");
        assert_eq!(d["candidate"]["from"], *from, "{dir}: {d}");
        assert_eq!(d["candidate"]["candidate"]["sdpMid"], "0", "{dir}: {d}");
        assert_eq!(
            d["signal"],
            json!({"from": from, "data": {"kind": format!("signal-{dir}")}}),
            "{dir}"
        );
        let message =
            json!({"from": from, "roomId": "cluster", "data": {"text": format!("message-{dir}")}});
        assert_eq!(d["message"], message, "{dir}");
        assert_eq!(d["messageAtC"], message, "{dir}: the whole room gets it");
        for at in ["peerUpdated", "peerUpdatedAtC"] {
            assert_eq!(d[at]["peerId"], *from, "{dir} {at}: {d}");
            assert_eq!(d[at]["state"], json!({"dir": dir}), "{dir} {at}: {d}");
        }
    }
    // The states are stored on the peers, as the last instance sees them.
    let view = &r["roomView"];
    assert_eq!(view["peerCount"], json!(3), "{view}");
    let state_of = |id: &Value| {
        view["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["peerId"] == *id))
            .map(|p| p["state"].clone())
    };
    assert_eq!(state_of(a), Some(json!({"dir": "ab"})), "{view}");
    assert_eq!(state_of(b), Some(json!({"dir": "ba"})), "{view}");
    assert_eq!(
        r["pairEventsAtC"],
        json!(0),
        "only the target gets them: {r}"
    );
    assert_eq!(r["ownMessages"], json!(0), "no echo to the sender: {r}");

    // leave-room on one instance: the others are told; the leaver is no longer reachable.
    assert_ok(&r["leaveB"], "leave B");
    assert_eq!(r["bLeftAtA"], json!({"roomId": "cluster", "peerId": b}));
    assert_eq!(r["bLeftAtC"], json!({"roomId": "cluster", "peerId": b}));
    assert_code(
        &r["offerToLeaver"],
        "unknown-peer",
        "offer to a peer that left",
    );
    assert_eq!(r["roomAfterLeave"]["status"], json!(200), "{r}");
    assert_eq!(r["roomAfterLeave"]["body"]["peerCount"], json!(2), "{r}");
}

#[test]
fn peers_on_three_instances_join_one_room_and_every_relayed_event_crosses_both_ways() {
    cluster_join(3, "websocket");
}

#[test]
fn a_polling_peer_on_another_instance_gets_and_sends_every_relayed_event() {
    cluster_join(2, "polling");
}

fn cluster_ordering(args: &Value) {
    // A rate limit high enough that the burst itself is accepted (as in signaling_protocol.rs).
    let cluster = Cluster::start(
        "ordering",
        2,
        "rate_limit_per_second = 100000\nrate_limit_burst = 100000",
    );
    let n = args["n"].clone();
    // Client 0 (the sender) is on instance 0, client 1 (the receiver) on instance 1.
    let r = cluster.drive("ordering", args);
    assert_eq!(r["errorsAtSender"], json!([]), "{r}");
    assert_eq!(r["received"], n, "{r}");
    assert_eq!(r["unique"], n, "{r}");
    assert_eq!(r["outOfOrder"], json!(0), "{r}");
    assert_eq!(r["inOrder"], json!(true), "{r}");
}

#[test]
fn two_thousand_candidates_to_a_peer_on_another_instance_arrive_complete_and_in_order() {
    cluster_ordering(&json!({"n": 2000, "padBytes": 512}));
}

#[test]
fn two_thousand_candidates_between_polling_peers_on_two_instances_arrive_complete_and_in_order() {
    cluster_ordering(
        &json!({"n": 2000, "padBytes": 64, "transportA": "polling", "transportB": "polling"}),
    );
}

#[test]
fn joiners_on_three_instances_racing_for_the_last_seat_of_a_rest_room_never_both_get_in() {
    let cluster = Cluster::start("racerest", 3, "");
    let r = cluster.drive("race", &json!({"rounds": 10, "contenders": 6}));
    let rounds = r["results"].as_array().expect("results");
    assert_eq!(rounds.len(), 10);
    for round in rounds {
        assert_eq!(round["instances"], json!(3), "spread: {round}");
        assert_eq!(round["oks"], json!(1), "exactly one wins: {round}");
        assert_eq!(round["codes"], json!(vec!["room-full"; 5]), "{round}");
        assert_eq!(round["members"], json!(2), "{round}");
    }
}

#[test]
fn joiners_on_two_instances_fill_a_free_form_room_to_exactly_max_peers_per_room() {
    let cluster = Cluster::start("racefree", 2, "max_peers_per_room = 3");
    let r = cluster.drive(
        "race",
        &json!({"rounds": 10, "contenders": 6, "freeForm": true}),
    );
    let rounds = r["results"].as_array().expect("results");
    assert_eq!(rounds.len(), 10);
    for round in rounds {
        assert_eq!(round["instances"], json!(2), "spread: {round}");
        assert_eq!(round["oks"], json!(2), "two seats were left: {round}");
        assert_eq!(round["codes"], json!(vec!["room-full"; 4]), "{round}");
        assert_eq!(round["members"], json!(3), "{round}");
    }
}

#[test]
fn peers_in_another_room_on_other_instances_are_unreachable_and_receive_nothing() {
    // a, b and c on three different instances: every attempt crosses instances.
    let cluster = Cluster::start("isolation", 3, "");
    let r = cluster.drive("isolation", &json!({"pairBarrier": true}));
    assert_code(&r["offerToOtherRoom"], "unknown-peer", "offer");
    assert_code(&r["candidateToOtherRoom"], "unknown-peer", "candidate");
    assert_code(&r["signalToOtherRoom"], "unknown-peer", "signal");
    assert_code(
        &r["offerNamingOtherRoom"],
        "not-in-room",
        "offer naming a foreign room",
    );
    assert_code(&r["messageToOtherRoom"], "not-in-room", "message");
    assert_code(&r["stateInOtherRoom"], "not-in-room", "update-state");
    assert_code(&r["offerToSelf"], "unknown-peer", "offer to self");
    assert_eq!(r["deliveredToC"], json!(0), "{r}");
    assert_ok(&r["offerInRoomStillWorks"], "offer in the shared room");
    assert_ok(&r["cJoinsIso1"], "c joins a's room");
    assert_ok(&r["markerAck"], "the marker offer");
    assert_eq!(
        r["deliveredToCBeforeMarker"],
        json!(0),
        "nothing refused reached c, even late: {r}"
    );
}

#[test]
fn a_room_password_set_through_one_instance_is_checked_on_another() {
    let cluster = Cluster::start("passwords", 2, "");
    let r = cluster.drive("clusterPassword", &json!({}));
    assert_ok(&r["create"], "first joiner (instance 0) sets the password");
    assert_code(&r["missing"], "wrong-password", "no password, instance 1");
    assert_code(&r["wrong"], "wrong-password", "wrong password, instance 1");
    assert_ok(&r["right"], "right password, instance 1");
    assert_eq!(
        r["bJoinedAtA"]["peer"]["peerId"],
        r["right"]["self"]["peerId"]
    );
    assert_eq!(r["restRoom"]["status"], json!(201), "{r}");
    assert_eq!(r["restRoom"]["body"]["hasPassword"], json!(true), "{r}");
    assert_code(
        &r["restWrong"],
        "wrong-password",
        "REST room (instance 1), wrong",
    );
    assert_ok(
        &r["restRight"],
        "REST room (instance 1), right on instance 0",
    );
    assert_eq!(r["viewAtOther"]["status"], json!(200), "{r}");
    assert_eq!(r["viewAtOther"]["body"]["hasPassword"], json!(true), "{r}");
    let listing = r["listing"].to_string();
    assert!(
        !listing.contains("s3cret") && !listing.contains("\"pw\""),
        "{listing}"
    );
}

#[test]
fn rest_on_any_instance_shows_and_deletes_the_rooms_of_the_whole_cluster() {
    let cluster = Cluster::start("rest", 2, &format!("admin_token = \"{ADMIN}\""));
    let r = cluster.drive(
        "clusterRest",
        &json!({"admin": ADMIN, "metrics": cluster.metrics_bases()}),
    );
    let (a, b) = (&r["ids"]["a"], &r["ids"]["b"]);
    let stats = |key: &str, rooms: u64, peers: u64| {
        let all = r[key].as_array().expect("stats of every instance");
        assert_eq!(all.len(), 2, "{key}: {all:?}");
        for (i, s) in all.iter().enumerate() {
            assert_eq!(s["rooms"], json!(rooms), "{key}, instance {i}: {s}");
            assert_eq!(s["peersInRooms"], json!(peers), "{key}, instance {i}: {s}");
        }
    };
    stats("statsBefore", 0, 0);

    // POST on instance 0, seen on instance 1.
    assert_eq!(r["created"]["status"], json!(201), "{r}");
    assert_eq!(r["atOther"]["status"], json!(200), "{r}");
    assert_eq!(r["atOther"]["body"]["id"], r["id"], "{r}");
    assert_eq!(r["atOther"]["body"]["name"], "shared", "{r}");
    assert_eq!(r["atOther"]["body"]["maxPeers"], json!(4), "{r}");
    assert_eq!(r["atOther"]["body"]["peerCount"], json!(0), "{r}");
    let listed = r["listAtOther"]["body"]["rooms"]
        .as_array()
        .is_some_and(|rooms| rooms.iter().any(|room| room["id"] == r["id"]));
    assert!(listed, "{r}");

    // Members joined through both instances, counted the same from both.
    assert_ok(&r["joinA"], "join A (instance 0)");
    assert_ok(&r["joinB"], "join B (instance 1)");
    assert_ok(&r["joinC"], "join C (instance 1, free-form room)");
    for (i, view) in r["views"].as_array().expect("views").iter().enumerate() {
        assert_eq!(view["peerCount"], json!(2), "instance {i}: {view}");
        assert!(
            view.get("peers").is_none(),
            "anonymous: counts only: {view}"
        );
    }
    for (i, view) in r["adminViews"]
        .as_array()
        .expect("views")
        .iter()
        .enumerate()
    {
        assert_eq!(
            peer_ids(&view["peers"]),
            sorted(&[a, b]),
            "instance {i}: {view}"
        );
    }
    assert_eq!(r["freeAtFirst"]["status"], json!(200), "{r}");
    assert_eq!(r["freeAtFirst"]["body"]["peerCount"], json!(1), "{r}");
    // Cluster-wide on each instance: two rooms, three peers (a, b, c).
    stats("statsDuring", 2, 3);

    // DELETE on instance 1 removes a, connected to instance 0; b is told too.
    assert_eq!(r["deleted"]["status"], json!(204), "{r}");
    assert_eq!(r["leftAtA"], json!({"roomId": r["id"], "peerId": a}), "{r}");
    assert_eq!(r["leftAtB"], json!({"roomId": r["id"], "peerId": a}), "{r}");
    assert_eq!(r["after"], json!([404, 404]), "{r}");
    assert_code(&r["messageAfterA"], "not-in-room", "a after the delete");
    assert_code(&r["messageAfterB"], "not-in-room", "b after the delete");
    stats("statsAfter", 1, 1);
}

#[test]
fn peers_of_an_instance_killed_with_sigkill_are_removed_from_the_others_within_the_bound() {
    let mut cluster = Cluster::start("kill9", 3, "");
    // a on instance 0, b on instance 1 (killed), c on instance 2.
    let survivors_metrics = [
        common::metrics_base(&cluster.ports[0]),
        common::metrics_base(&cluster.ports[2]),
    ];
    let mut driver = common::Staged::spawn(
        &cluster.urls(),
        "clusterKill",
        &json!({"metrics": survivors_metrics}),
    );
    let joined = driver.expect_stage("joined", Duration::from_secs(60), &cluster.logs());
    let b = joined["ids"]["b"].clone();
    cluster.nodes[1].kill9();
    let killed = Instant::now();
    let mut told = Vec::new();
    for _ in 0..2 {
        let left = DEAD_INSTANCE_BOUND.saturating_sub(killed.elapsed());
        let line = driver.next(left).unwrap_or_else(|e| {
            panic!(
                "a survivor was not told within {DEAD_INSTANCE_BOUND:?} of the kill: {e} \
                 (told so far: {told:?})\n--- driver stderr ---\n{}\n{}",
                driver.stderr(),
                cluster.logs()
            )
        });
        let took = killed.elapsed();
        assert_eq!(line["stage"], "userLeft", "{line}");
        assert_eq!(line["payload"]["peerId"], b, "{line}");
        assert_eq!(line["payload"]["roomId"], "kill", "{line}");
        assert!(took <= DEAD_INSTANCE_BOUND, "told after {took:?}: {line}");
        told.push((line["at"].clone(), took));
    }
    let mut at: Vec<String> = told.iter().map(|(w, _)| w.to_string()).collect();
    at.sort();
    assert_eq!(at, ["\"a\"", "\"c\""], "both survivors: {told:?}");
    let r = driver.finish(Duration::from_secs(60), &cluster.logs());
    assert_code(&r["offerToDead"], "unknown-peer", "offer to the dead peer");
    assert_ok(&r["aToC"], "survivors still talk");
    assert_eq!(r["aToCDelivered"]["offer"]["sdp"], "alive", "{r}");
    assert_eq!(r["survivorsConnected"], json!([true, true]), "{r}");
    // REST and /stats on each survivor: only a and c are left.
    for (i, room) in r["rooms"].as_array().expect("rooms").iter().enumerate() {
        assert_eq!(room["status"], json!(200), "survivor {i}: {room}");
        assert_eq!(room["body"]["peerCount"], json!(2), "survivor {i}: {room}");
    }
    let stats = r["stats"].as_array().expect("stats");
    assert_eq!(stats.len(), 2, "{r}");
    for (i, s) in stats.iter().enumerate() {
        assert_eq!(s["peersInRooms"], json!(2), "survivor {i}: {s}");
        assert_eq!(s["rooms"], json!(1), "survivor {i}: {s}");
    }
}

#[test]
fn while_redis_is_down_events_are_answered_unavailable_and_not_ready_then_work_again() {
    let mut cluster = Cluster::start("outage", 2, "");
    let mut driver = common::Staged::spawn(&cluster.urls(), "redisOutage", &json!({}));
    driver.expect_stage("joined", Duration::from_secs(60), &cluster.logs());

    // Kept well under the 10 s registration TTL: this is an outage the instances ride out
    // (the registration is still in Redis when it comes back), not a wiped Redis.
    cluster.redis.stop();
    driver.command("outage");
    cluster.wait_ready_status(&[0, 1], 503, Duration::from_secs(10), "Redis stopped");
    let outage = driver.expect_stage("outage", Duration::from_secs(30), &cluster.logs());
    let during = outage["during"].as_array().expect("during");
    assert!(!during.is_empty(), "{outage}");
    for ask in during {
        assert_eq!(
            ask["code"], "unavailable",
            "every event needing Redis is answered `unavailable` (never silence, never \
             performed): {ask}\nall: {outage}"
        );
    }
    // Health (liveness) is not readiness: the process is alive.
    let health = cluster.get(0, "/health", &[]);
    assert_eq!(health.status, 200, "{health:?}");

    cluster.redis.start_again();
    cluster.wait_ready_status(&[0, 1], 200, Duration::from_secs(20), "Redis back");
    driver.command("back");
    let r = driver.finish(Duration::from_secs(90), &cluster.logs());
    let after = &r["after"];
    for key in ["offerAB", "offerBA", "messageAB"] {
        assert_eq!(after[key]["code"], "ok", "{key} after Redis came back: {r}");
    }
    assert_eq!(after["offerAtB"]["offer"]["sdp"], "after-ab", "{r}");
    assert_eq!(after["offerAtA"]["offer"]["sdp"], "after-ba", "{r}");
    assert_eq!(after["messageAtB"]["data"], "after-message", "{r}");
    assert_eq!(after["roomView"]["status"], json!(200), "{r}");
    assert_eq!(
        after["roomView"]["body"]["peerCount"],
        json!(2),
        "the peers stayed in their room: {r}"
    );
    assert_eq!(r["unavailableButDelivered"], json!([]), "{r}");
    assert_eq!(r["connected"], json!({"a": true, "b": true}), "{r}");
    assert_eq!(r["disconnectReasons"], json!({"a": null, "b": null}), "{r}");
}

#[test]
fn after_redis_restarts_empty_the_instances_fence_their_sockets_and_then_serve_again() {
    let mut cluster = Cluster::start("wiped", 2, "");
    let mut driver = common::Staged::spawn(&cluster.urls(), "redisWiped", &json!({}));
    driver.expect_stage("joined", Duration::from_secs(60), &cluster.logs());

    cluster.redis.wipe_and_start_again();
    let wiped = Instant::now();
    driver.command("wiped");
    // Each instance finds its registration gone at its next heartbeat, fences itself and
    // disconnects its sockets: no client is left silently in a room nobody else sees.
    let gone = driver.expect_stage("disconnected", Duration::from_secs(45), &cluster.logs());
    let took = wiped.elapsed();
    for reason in gone["reasons"].as_array().expect("reasons") {
        assert!(reason.is_string(), "{gone}");
    }
    assert!(
        took <= DEAD_INSTANCE_BOUND,
        "sockets fenced {took:?} after the wipe: {gone}"
    );
    cluster.wait_ready_status(&[0, 1], 200, Duration::from_secs(20), "Redis back, empty");
    driver.command("ready");
    let r = driver.finish(Duration::from_secs(60), &cluster.logs());
    assert_ok(&r["joinC"], "a new client joins on instance 0");
    assert_eq!(r["joinC"]["peers"], json!([]), "no phantom peers: {r}");
    assert_ok(&r["joinD"], "a new client joins on instance 1");
    assert_eq!(
        peer_ids(&r["joinD"]["peers"]),
        sorted(&[&r["ids"]["c"]]),
        "{r}"
    );
    assert_eq!(r["dJoinedAtC"]["peer"]["peerId"], r["ids"]["d"], "{r}");
    assert_ok(&r["offerCD"], "offer c → d");
    assert_eq!(r["offerAtD"]["from"], r["ids"]["c"], "{r}");
    assert_ok(&r["offerDC"], "offer d → c");
    assert_eq!(r["offerAtC"]["from"], r["ids"]["d"], "{r}");
    assert_ok(&r["messageCD"], "message");
    assert_eq!(r["messageAtD"]["from"], r["ids"]["c"], "{r}");
    assert_code(&r["offerToOldA"], "unknown-peer", "offer to a fenced peer");
    assert_eq!(r["roomView"]["status"], json!(200), "{r}");
    assert_eq!(r["roomView"]["body"]["peerCount"], json!(2), "{r}");
}

/// `rediss://` with `signaling.redis_ca_file`: two instances share state through a Redis that
/// speaks only TLS, verified against the given CA; without the CA file (system roots) the
/// same server is refused at start-up with a clear error, so verification is really on.
#[test]
fn instances_talk_through_a_tls_only_redis_verified_with_redis_ca_file() {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("cert");
    let cert = ck.cert.pem();
    let redis = RedisServer::start_tls(&cert, &ck.key_pair.serialize_pem(), &cert);
    let ca = redis
        .ca_file()
        .expect("TLS server has a CA")
        .display()
        .to_string();
    let prefix = common::unique_prefix("tls");
    let limits = "rate_limit_per_second = 100000\nrate_limit_burst = 100000";
    let keys = format!(
        "{}\nredis_ca_file = \"{ca}\"\n",
        common::cluster_extra(&redis.tls_url(), &prefix, limits)
    );
    let ports = [Ports::new(), Ports::new()];
    let nodes: Vec<Service> = ports.iter().map(|p| common::start(p, &keys)).collect();
    let refs: Vec<&Service> = nodes.iter().collect();
    let r = common::drive_at(
        &refs,
        &common::bases(&ports.iter().collect::<Vec<_>>()),
        "ordering",
        &json!({"n": 300}),
    );
    assert_eq!(r["received"], json!(300), "{r}");
    assert_eq!(r["inOrder"], json!(true), "{r}");
    assert_eq!(r["errorsAtSender"], json!([]), "{r}");

    let untrusting = common::cluster_extra(&redis.tls_url(), &prefix, "");
    let p = Ports::new();
    let mut svc = Service::spawn(
        "switchboard-signaling",
        &common::config(&p, &untrusting),
        &[],
        &[],
    );
    let status = svc
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("an instance that cannot verify Redis must not start: {e}"));
    assert!(!status.success(), "{status}");
    let logs = svc.logs();
    assert!(logs.contains("could not reach Redis"), "{logs}");
}

/// `signaling.redis_prefix`: two deployments on one Redis see nothing of each other (rooms,
/// REST, reach), while each still works across its own instances.
#[test]
fn two_deployments_with_their_own_prefixes_share_one_redis_without_seeing_each_other() {
    let redis = RedisServer::start();
    let (pa, pb) = (
        common::unique_prefix("deploya"),
        common::unique_prefix("deployb"),
    );
    let limits = "rate_limit_per_second = 100000\nrate_limit_burst = 100000";
    let a_ports = [Ports::new(), Ports::new()];
    let b_ports = Ports::new();
    let a: Vec<Service> = a_ports
        .iter()
        .map(|p| common::start(p, &common::cluster_extra(&redis.url(), &pa, limits)))
        .collect();
    let b = common::start(&b_ports, &common::cluster_extra(&redis.url(), &pb, limits));
    // Deployment A works across its two instances.
    let refs: Vec<&Service> = a.iter().collect();
    let r = common::drive_at(
        &refs,
        &common::bases(&a_ports.iter().collect::<Vec<_>>()),
        "ordering",
        &json!({"n": 100}),
    );
    assert_eq!(r["received"], json!(100), "{r}");
    // A REST room of deployment A is unknown to deployment B, and B lists no room of A's.
    let room = common::http(
        "POST",
        &format!("{}/api/rooms", common::base(&a_ports[0])),
        &[],
        Some(&json!({"name": "a-only"})),
    );
    assert_eq!(room.status, 201, "{room:?}");
    let id = room.body["id"].as_str().expect("room id").to_string();
    let on_a1 = common::http(
        "GET",
        &format!("{}/api/rooms/{id}", common::base(&a_ports[1])),
        &[],
        None,
    );
    assert_eq!(
        on_a1.status, 200,
        "the other instance of A sees it: {on_a1:?}"
    );
    let on_b = common::http(
        "GET",
        &format!("{}/api/rooms/{id}", common::base(&b_ports)),
        &[],
        None,
    );
    assert_eq!(on_b.status, 404, "{on_b:?}");
    let list_b = common::http(
        "GET",
        &format!("{}/api/rooms", common::base(&b_ports)),
        &[],
        None,
    );
    assert_eq!(list_b.body["rooms"], json!([]), "{list_b:?}\n{}", b.logs());
    // The same free-form room id in both deployments: two rooms, peers isolated.
    let r = common::drive_at(
        &[&a[0], &b],
        &format!("{},{}", common::base(&a_ports[0]), common::base(&b_ports)),
        "sameRoom",
        &json!({}),
    );
    assert_eq!(r["bPeers"], json!(0), "B saw A's peer in its room: {r}");
    assert_eq!(
        r["offer"]["error"]["code"], "unknown-peer",
        "a peer of deployment A reached one of deployment B: {r}"
    );
    // Control: the same scenario within deployment A does see the other peer.
    let r = common::drive_at(
        &refs,
        &common::bases(&a_ports.iter().collect::<Vec<_>>()),
        "sameRoom",
        &json!({"room": "same-room-a"}),
    );
    assert_eq!(r["bPeers"], json!(1), "{r}");
    assert_eq!(r["offer"]["ok"], json!(true), "{r}");
}

/// A password in the URL, given through `redis_url_file`: the instance authenticates, and the
/// password appears in no log line.
#[test]
fn a_redis_password_from_redis_url_file_authenticates_and_is_never_logged() {
    const PW: &str = "s3cret-redis-pass-4b1d";
    let redis = RedisServer::start_with_password(PW);
    let url = format!("redis://:{PW}@127.0.0.1:{}", redis.port());
    let prefix = common::unique_prefix("pw");
    let ports = [Ports::new(), Ports::new()];
    let extra = format!(
        "redis_url_file = \"redis-url\"\nredis_prefix = \"{prefix}\"\nrate_limit_per_second = 100000\nrate_limit_burst = 100000"
    );
    let nodes: Vec<Service> = ports
        .iter()
        .map(|p| {
            Service::start_with(
                "switchboard-signaling",
                &common::config(p, &extra),
                &[("redis-url", url.as_bytes())],
                &[],
            )
        })
        .collect();
    let refs: Vec<&Service> = nodes.iter().collect();
    let r = common::drive_at(
        &refs,
        &common::bases(&ports.iter().collect::<Vec<_>>()),
        "ordering",
        &json!({"n": 100}),
    );
    assert_eq!(r["received"], json!(100), "{r}");
    for n in &nodes {
        let logs = n.logs();
        assert!(logs.contains("Multi-instance mode"), "{logs}");
        assert!(!logs.contains(PW), "the Redis password was logged: {logs}");
    }
    // Without the password Redis refuses, and the instance says so and does not start.
    let p = Ports::new();
    let bare = format!(
        "redis_url = \"redis://127.0.0.1:{}\"\nredis_prefix = \"{prefix}\"",
        redis.port()
    );
    let mut svc = Service::spawn(
        "switchboard-signaling",
        &common::config(&p, &bare),
        &[],
        &[],
    );
    let status = svc
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("an instance Redis refuses must not start: {e}"));
    assert!(!status.success(), "{status}");
    assert!(svc.logs().contains("could not"), "{}", svc.logs());
}
