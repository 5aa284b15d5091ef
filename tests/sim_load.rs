//! The load mode and the list answers against the event stream: a client that follows the
//! events into a plain map (channels by Uniqueid, bridges by id) must hold, at the end of every
//! CoreShowChannels, Status, BridgeList and BridgeInfo answer, exactly what that answer lists,
//! while hundreds of calls ring, answer, bridge and hang up around it, and again after a forced
//! disconnect; and when the load stops, every call ends, every channel and bridge goes, and the
//! counters agree.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use amiwire::proto::Message;
use amiwire::sim::{SimConfig, SimHandle};
use sim_support::{Conn, start};

/// The snapshot headers every channel event and channel list item carries.
const SNAPSHOT: &[&str] = &[
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
];

/// What the client knows of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chan {
    fields: Vec<String>,
    bridge: String,
}

/// The client's picture of the PBX, kept from events only.
#[derive(Default)]
struct Picture {
    channels: BTreeMap<String, Chan>,
    bridges: BTreeMap<String, BTreeSet<String>>,
    /// Events about a channel or bridge the picture does not have.
    orphans: Vec<String>,
}

/// The snapshot under a prefix (`""`, `Dest`, `LocalOne`, `LocalTwo`), if the message has one.
fn snapshot(m: &Message, prefix: &str) -> Option<(String, Vec<String>)> {
    let get = |h: &str| m.get(&format!("{prefix}{h}")).map(|v| v.into_owned());
    get("ChannelState")?;
    let uid = get("Uniqueid")?;
    let fields = SNAPSHOT
        .iter()
        .map(|h| get(h).unwrap_or_default())
        .collect();
    Some((uid, fields))
}

impl Picture {
    /// The picture as the first CoreShowChannels answer draws it (bridges from `BridgeId`).
    fn seed(&mut self, items: &[Message]) {
        for item in items {
            let (uid, fields) = snapshot(item, "").unwrap();
            let bridge = item.get("BridgeId").unwrap().into_owned();
            if !bridge.is_empty() {
                self.bridges
                    .entry(bridge.clone())
                    .or_default()
                    .insert(uid.clone());
            }
            self.channels.insert(uid, Chan { fields, bridge });
        }
    }

    fn apply(&mut self, m: &Message) {
        let name = m.event_name().unwrap().into_owned();
        if name == "Newchannel" {
            let (uid, fields) = snapshot(m, "").unwrap();
            let chan = Chan {
                fields,
                bridge: String::new(),
            };
            assert!(
                self.channels.insert(uid, chan).is_none(),
                "Newchannel twice"
            );
            return;
        }
        for prefix in ["", "Dest", "LocalOne", "LocalTwo"] {
            if let Some((uid, fields)) = snapshot(m, prefix) {
                match self.channels.get_mut(&uid) {
                    Some(c) => c.fields = fields,
                    None => self.orphans.push(format!("{name} {uid}")),
                }
            }
        }
        let bridge = || m.get("BridgeUniqueid").unwrap().into_owned();
        let uid = || m.get("Uniqueid").unwrap().into_owned();
        match name.as_str() {
            "Hangup" => {
                self.channels.remove(&uid());
            }
            "BridgeCreate" => {
                assert!(self.bridges.insert(bridge(), BTreeSet::new()).is_none());
            }
            "BridgeEnter" | "BridgeLeave" => {
                let (b, u) = (bridge(), uid());
                let entering = name == "BridgeEnter";
                match self.bridges.get_mut(&b) {
                    Some(members) if entering => {
                        members.insert(u.clone());
                    }
                    Some(members) => {
                        members.remove(&u);
                    }
                    None => self.orphans.push(format!("{name} {b}")),
                }
                if let Some(c) = self.channels.get_mut(&u) {
                    c.bridge = if entering { b.clone() } else { String::new() };
                }
                let members = self.bridges.get(&b).map_or(0, BTreeSet::len);
                let announced: usize = m.get("BridgeNumChannels").unwrap().parse().unwrap();
                assert_eq!(announced, members, "{name} of {b}");
            }
            "BridgeDestroy" => {
                let members = self.bridges.remove(&bridge());
                assert_eq!(members, Some(BTreeSet::new()), "destroyed with members");
            }
            _ => {}
        }
    }

    /// A CoreShowChannels or Status answer's items against the picture.
    fn check_channels(&self, items: &[Message], bridge_header: &str, what: &str) {
        let listed: BTreeMap<String, Chan> = items
            .iter()
            .map(|item| {
                let (uid, fields) = snapshot(item, "").unwrap();
                let bridge = item.get(bridge_header).unwrap().into_owned();
                (uid, Chan { fields, bridge })
            })
            .collect();
        if listed != self.channels {
            let only_listed: Vec<_> = listed
                .keys()
                .filter(|k| !self.channels.contains_key(*k))
                .collect();
            let only_seen: Vec<_> = self
                .channels
                .keys()
                .filter(|k| !listed.contains_key(*k))
                .collect();
            let differ: Vec<_> = listed
                .iter()
                .filter(|(k, v)| self.channels.get(*k).is_some_and(|c| c != *v))
                .map(|(k, v)| (v, self.channels.get(k)))
                .take(3)
                .collect();
            panic!(
                "{what}: listed only {only_listed:?}; seen only {only_seen:?}; differing {differ:?}"
            );
        }
    }

    fn check_bridges(&self, items: &[Message]) {
        let listed: BTreeMap<String, usize> = items
            .iter()
            .map(|b| {
                let id = b.get("BridgeUniqueid").unwrap().into_owned();
                (id, b.get("BridgeNumChannels").unwrap().parse().unwrap())
            })
            .collect();
        let seen: BTreeMap<String, usize> = self
            .bridges
            .iter()
            .map(|(id, members)| (id.clone(), members.len()))
            .collect();
        assert_eq!(listed, seen, "BridgeList");
    }

    fn check_bridge_info(&self, id: &str, items: &[Message], complete: &Message) {
        // Asterisk lists a bridge's channels sorted by uniqueid (as strings).
        let order: Vec<String> = items
            .iter()
            .map(|c| c.get("Uniqueid").unwrap().into_owned())
            .collect();
        assert!(order.is_sorted(), "BridgeInfo order {order:?}");
        let members: BTreeSet<String> = items
            .iter()
            .map(|c| {
                let (uid, fields) = snapshot(c, "").unwrap();
                assert_eq!(self.channels.get(&uid).map(|c| &c.fields), Some(&fields));
                uid
            })
            .collect();
        assert_eq!(Some(&members), self.bridges.get(id), "BridgeInfo {id}");
        let count: usize = complete.get("BridgeNumChannels").unwrap().parse().unwrap();
        assert_eq!(count, members.len());
    }
}

/// The client: a connection whose events all go through the picture, in order.
struct Follower {
    conn: Conn,
    picture: Picture,
    next_id: u64,
    events: u64,
}

impl Follower {
    /// Logs in, then seeds the picture from a CoreShowChannels answer: the simulator writes an
    /// answer after exactly the events it reflects, so the events after it continue it.
    async fn start(sim: &SimHandle) -> Follower {
        let mut conn = Conn::admin(sim, "on").await;
        conn.send("Action: CoreShowChannels\r\nActionID: seed\r\n\r\n")
            .await;
        let items: Vec<Message> = conn
            .list("seed")
            .await
            .into_iter()
            .filter(|m| m.event_name().as_deref() == Some("CoreShowChannel"))
            .collect();
        let mut picture = Picture::default();
        picture.seed(&items);
        Follower {
            conn,
            picture,
            next_id: 0,
            events: 0,
        }
    }

    /// Sends an action and returns its list items and Complete event, applying every event
    /// that arrives before them.
    async fn ask(&mut self, action: &str) -> (Vec<Message>, Message) {
        let answer = self.ask_or_error(action).await;
        answer.unwrap_or_else(|| panic!("{action} failed"))
    }

    /// Every list answer, one after another, each against the picture at its end.
    async fn check_all(&mut self) {
        let (items, _) = self.ask("Action: CoreShowChannels\r\n").await;
        self.picture
            .check_channels(&items, "BridgeId", "CoreShowChannels");
        let (items, _) = self.ask("Action: Status\r\n").await;
        self.picture.check_channels(&items, "BridgeID", "Status");
        let (items, _) = self.ask("Action: BridgeList\r\n").await;
        self.picture.check_bridges(&items);
        // A few bridges and channels by name (they may end before the answer: then the
        // answer is an error, and the picture must not have them either).
        let bridges: Vec<String> = self.picture.bridges.keys().take(3).cloned().collect();
        for b in bridges {
            let action = format!("Action: BridgeInfo\r\nBridgeUniqueid: {b}\r\n");
            if let Some((items, done)) = self.ask_or_error(&action).await {
                self.picture.check_bridge_info(&b, &items, &done);
            } else {
                assert!(!self.picture.bridges.contains_key(&b), "BridgeInfo {b}");
            }
        }
        let names: Vec<String> = (self.picture.channels.values())
            .take(3)
            .map(|c| c.fields[0].clone())
            .collect();
        for name in names {
            let action = format!("Action: Status\r\nChannel: {name}\r\n");
            match self.ask_or_error(&action).await {
                Some((items, _)) => {
                    assert_eq!(items.len(), 1, "Status {name}");
                    let only: Vec<Message> = items;
                    let picture = Picture {
                        channels: self
                            .picture
                            .channels
                            .iter()
                            .filter(|(_, c)| c.fields[0] == name)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        ..Picture::default()
                    };
                    picture.check_channels(&only, "BridgeID", "Status Channel=");
                }
                None => assert!(
                    !self.picture.channels.values().any(|c| c.fields[0] == name),
                    "Status {name} said no such channel"
                ),
            }
        }
        assert!(
            self.picture.orphans.is_empty(),
            "{:?}",
            self.picture.orphans
        );
    }

    /// Like `ask`, but None when the action is answered with an error.
    async fn ask_or_error(&mut self, action: &str) -> Option<(Vec<Message>, Message)> {
        self.next_id += 1;
        let id = format!("q-{}", self.next_id);
        self.conn
            .send(&format!("{action}ActionID: {id}\r\n\r\n"))
            .await;
        let mut items = Vec::new();
        loop {
            let m = self
                .conn
                .next_within(Duration::from_secs(20))
                .await
                .unwrap();
            if m.action_id().as_deref() == Some(id.as_str()) {
                if m.get("Response").as_deref() == Some("Error") {
                    return None;
                }
                if m.get("EventList").as_deref() == Some("Complete") {
                    return Some((items, m));
                }
                if m.is_event() {
                    items.push(m);
                }
            } else if m.is_event() {
                self.events += 1;
                self.picture.apply(&m);
            }
        }
    }
}

async fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 500 concurrent calls: the lists agree with the events at several moments while calls
/// start and end, and the load ends cleanly when stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_agree_with_events_under_load_and_the_load_ends_cleanly() {
    const CALLS: usize = 500;
    let sim = start(
        SimConfig::new()
            .load_calls(CALLS)
            .call_duration(Duration::from_secs(10))
            .time_scale(0.5),
    )
    .await;
    // Every call has its four channels up (two Local pairs) once it rings.
    wait_for("the calls come up", Duration::from_secs(20), || {
        sim.channel_count() >= CALLS * 4 * 9 / 10
    })
    .await;
    let mut client = Follower::start(&sim).await;
    // Several moments, until every call that was up at the seed has been replaced.
    let turned_over = sim.load_calls_ended() + CALLS as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut checks = 0;
    while checks < 4 || sim.load_calls_ended() < turned_over {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the calls did not turn over"
        );
        tokio::time::sleep(Duration::from_millis(fastrand::u64(200..600))).await;
        client.check_all().await;
        // A client that fell 10,000 events behind would have lost some: the checks above
        // would not be about the simulator any more.
        assert_eq!(sim.events_dropped(), 0, "the client kept up");
        let (started, ended) = (sim.load_calls_started(), sim.load_calls_ended());
        assert!(started - ended <= CALLS as u64, "{started} - {ended}");
        checks += 1;
    }
    assert!(client.events > 10_000, "{} events followed", client.events);

    // A forced disconnect while the calls go on: the connection ends, and a client that starts
    // over from the lists agrees with them again.
    sim.disconnect_all();
    assert!(client.conn.closes_within(Duration::from_secs(5)).await);
    let mut client = Follower::start(&sim).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.check_all().await;

    sim.stop_load();
    wait_for("every load call ends", Duration::from_secs(30), || {
        sim.channel_count() == 0
    })
    .await;
    wait_for("the counters agree", Duration::from_secs(5), || {
        sim.load_calls_started() == sim.load_calls_ended()
    })
    .await;
    client.check_all().await;
    assert!(client.picture.channels.is_empty());
    assert!(client.picture.bridges.is_empty());
    assert_eq!(sim.events_dropped(), 0, "the client kept up");
    sim.shutdown().await;
}

/// One load call's events follow the recorded bridged call: two Local pairs, ringing, an
/// answer, a basic bridge, hangups with cause 16, in this order of first appearance.
#[tokio::test]
async fn a_load_call_is_shaped_like_the_recorded_bridged_call() {
    let sim = start(
        SimConfig::new()
            .load_calls(1)
            .call_duration(Duration::from_secs(1))
            .time_scale(0.2),
    )
    .await;
    let mut conn = Conn::admin(&sim, "on").await;
    // The first call may have started before the login: the next one is followed whole.
    let mut kinds: Vec<String> = Vec::new();
    let mut hangups = Vec::new();
    let mut chans = BTreeSet::new();
    let mut seen_newchannel = false;
    while hangups.len() < 4 {
        let m = conn.next_within(Duration::from_secs(10)).await.unwrap();
        let Some(name) = m.event_name().map(|n| n.into_owned()) else {
            continue;
        };
        // A call's first channel is its Originate's `;1` half.
        seen_newchannel |= name == "Newchannel"
            && m.get("Channel")
                .is_some_and(|c| c.starts_with("Local/1000@amiwire-load-") && c.ends_with(";1"));
        if !seen_newchannel {
            continue;
        }
        if name == "Newchannel" {
            chans.insert(m.get("Channel").unwrap().into_owned());
        }
        if name == "Hangup" && chans.contains(&*m.get("Channel").unwrap()) {
            hangups.push((
                m.get("Channel").unwrap().into_owned(),
                m.get("Cause").unwrap().into_owned(),
                m.get("Cause-txt").unwrap().into_owned(),
            ));
        }
        if !kinds.contains(&name) {
            kinds.push(name);
        }
    }
    let order = [
        "Newchannel",
        "LocalBridge",
        "DialBegin",
        "DialState",
        "DialEnd",
        "BridgeCreate",
        "BridgeEnter",
        "BridgeLeave",
        "BridgeDestroy",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| kinds.iter().position(|n| n == k).unwrap_or(usize::MAX))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "Newstate"), "{kinds:?}");
    assert_eq!(chans.len(), 4, "{chans:?}");
    for (chan, cause, text) in &hangups {
        assert!(chan.starts_with("Local/"), "{chan}");
        assert_eq!((cause.as_str(), text.as_str()), ("16", "Normal Clearing"));
    }
    sim.shutdown().await;
}
