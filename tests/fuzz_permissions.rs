//! Property tests of the permission matcher (protocol §5.2–§5.4): `pattern_matches`,
//! `Permissions::can_subscribe` and `can_publish` against a small reference model, over valid
//! room and channel names and patterns both well-formed and not.
//!
//! Cases per property: the default below, or `PROPTEST_CASES`.

use arqonbus::auth::{pattern_matches, Permissions};
use arqonbus::protocol::ChannelKey;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::Value;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    let persistence = FileFailurePersistence::Direct("proptest-regressions/fuzz_permissions.txt");
    ProptestConfig { cases, failure_persistence: Some(Box::new(persistence)), ..ProptestConfig::default() }
}

/// The model: a pattern is exactly two segments split by `:`; a segment is `*` (any one whole
/// name) or a name compared exactly.
fn model_matches(pattern: &str, room: &str, channel: &str) -> bool {
    let segment = |s: &str, name: &str| s == "*" || s == name;
    match pattern.split(':').collect::<Vec<_>>()[..] {
        [r, c] => segment(r, room) && segment(c, channel),
        _ => false,
    }
}

fn reserved(room: &str) -> bool {
    room.starts_with('_')
}

/// Subscribing: admins anywhere; others where a pattern matches, never in a reserved room.
fn model_subscribe(p: &Permissions, room: &str, channel: &str) -> bool {
    p.admin || (!reserved(room) && p.subscribe.iter().any(|pat| model_matches(pat, room, channel)))
}

/// Publishing: never in a reserved room, not even for admins; else admins or a matching pattern.
fn model_publish(p: &Permissions, room: &str, channel: &str) -> bool {
    !reserved(room) && (p.admin || p.publish.iter().any(|pat| model_matches(pat, room, channel)))
}

/// Valid names, drawn mostly from a small pool so that patterns and names meet often.
fn name() -> impl Strategy<Value = String> {
    let pool = vec!["a", "b", "science", "explore", "_sys", "activity", "_x", "A", "a.b", "-", "_", "a-b_c.9"];
    prop_oneof![
        4 => prop::sample::select(pool).prop_map(str::to_owned),
        1 => "[A-Za-z0-9_.-]{1,64}",
    ]
}

/// One pattern segment: `*`, a name, or something that is neither.
fn segment() -> impl Strategy<Value = String> {
    let odd = vec!["", "**", "sci*", "*a", " *", "* ", "a*b", "science ", "SCIENCE", "?", "%"];
    prop_oneof![
        3 => Just("*".to_owned()),
        6 => name(),
        2 => prop::sample::select(odd).prop_map(str::to_owned),
    ]
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (segment(), segment()).prop_map(|(r, c)| format!("{r}:{c}")),
        1 => segment(),
        1 => (segment(), segment(), segment()).prop_map(|(a, b, c)| format!("{a}:{b}:{c}")),
        1 => any::<String>(),
    ]
}

fn permissions() -> impl Strategy<Value = Permissions> {
    (vec(pattern(), 0..4), vec(pattern(), 0..4), any::<bool>(), any::<bool>()).prop_map(
        |(subscribe, publish, private, admin)| Permissions { subscribe, publish, private, admin, info: Value::Null },
    )
}

fn key(room: &str, channel: &str) -> ChannelKey {
    ChannelKey::parse(room, channel).unwrap_or_else(|e| panic!("{room}:{channel} is not a valid key: {e:?}"))
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn patterns_match_like_the_model(p in pattern(), room in name(), channel in name()) {
        prop_assert_eq!(pattern_matches(&p, &key(&room, &channel)), model_matches(&p, &room, &channel), "{}", p);
    }

    #[test]
    fn permissions_decide_like_the_model(p in permissions(), room in name(), channel in name()) {
        let k = key(&room, &channel);
        prop_assert_eq!(p.can_subscribe(&k), model_subscribe(&p, &room, &channel));
        prop_assert_eq!(p.can_publish(&k), model_publish(&p, &room, &channel));
    }

    /// Nobody publishes into a server room; only admins read one.
    #[test]
    fn reserved_rooms_are_the_servers(mut p in permissions(), room in "_[A-Za-z0-9_.-]{0,63}", channel in name()) {
        let k = key(&room, &channel);
        p.publish.push("*:*".into());
        p.subscribe.push(format!("{room}:*"));
        prop_assert!(!p.can_publish(&k));
        prop_assert_eq!(p.can_subscribe(&k), p.admin);
        p.admin = true;
        prop_assert!(!p.can_publish(&k));
        prop_assert!(p.can_subscribe(&k));
    }

    /// `*` stands for one whole segment: a star inside a segment matches nothing, and a
    /// segment of `*` matches any name there.
    #[test]
    fn a_star_is_one_whole_segment(
        room in name(),
        channel in name(),
        partial in prop_oneof!["[a-z]{1,3}\\*[a-z]{0,3}", "[a-z]{0,3}\\*[a-z]{1,3}", "\\*[*.]"],
    ) {
        let k = key(&room, &channel);
        for never in [format!("{partial}:{channel}"), format!("{room}:{partial}"), format!("{partial}:*")] {
            prop_assert!(!pattern_matches(&never, &k), "{} matched", never);
        }
        for never in ["*".to_owned(), "*:*:*".to_owned(), format!("{room}:{channel}:*")] {
            prop_assert!(!pattern_matches(&never, &k), "{} matched", never);
        }
        for always in [format!("*:{channel}"), format!("{room}:*"), "*:*".to_owned()] {
            prop_assert!(pattern_matches(&always, &k), "{} did not match", always);
        }
    }
}

/// The generators are not vacuous: without admin, generated patterns both grant and refuse
/// subscribing and publishing, in ordinary and in reserved rooms.
#[test]
fn generated_permissions_both_grant_and_refuse() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (permissions(), name(), name());
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5000 {
        let Ok(tree) = strategy.new_tree(&mut runner) else { continue };
        let (mut p, room, channel) = tree.current();
        p.admin = false;
        let k = key(&room, &channel);
        seen.insert((reserved(&room), "subscribe", p.can_subscribe(&k)));
        seen.insert((reserved(&room), "publish", p.can_publish(&k)));
    }
    for want in [
        (false, "subscribe", true),
        (false, "subscribe", false),
        (false, "publish", true),
        (false, "publish", false),
        (true, "subscribe", false),
        (true, "publish", false),
    ] {
        assert!(seen.contains(&want), "{want:?} never reached: {seen:?}");
    }
}
