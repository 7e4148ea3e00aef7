//! Property tests of configuration loading (docs/configuration.md): generated TOML files and
//! `ARQONBUS_*` environments, held to a reference model of every key's type and range. A
//! refusal names an offending key, an accepted configuration has the values that were set
//! (the environment over the file), and what `arqonbus config` prints loads back the same.
//!
//! Cases per property: the default below, or `PROPTEST_CASES`. Each case runs in a
//! `figment::Jail` (its own directory and environment).

#![allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error

use std::collections::BTreeSet;
use std::path::Path;

use arqonbus::config::Config;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use serde_json::Value;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    let persistence = FileFailurePersistence::Direct("proptest-regressions/fuzz_config.txt");
    ProptestConfig { cases, failure_persistence: Some(Box::new(persistence)), ..ProptestConfig::default() }
}

/// What a key holds and which values are valid.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// An unsigned integer of a type whose largest value is `max`, valid in `lo..=hi`.
    Int {
        max: u64,
        lo: u64,
        hi: u64,
    },
    Bool,
    /// A string from `ok` is valid, one from `bad` is refused.
    Text {
        ok: &'static [&'static str],
        bad: &'static [&'static str],
    },
    /// A list of strings, valid when every item is from `ok`.
    List {
        ok: &'static [&'static str],
        bad: &'static [&'static str],
    },
}

const U32: u64 = u32::MAX as u64;
const U64: u64 = u64::MAX;

const fn int(max: u64, lo: u64, hi: u64) -> Kind {
    Kind::Int { max, lo, hi }
}

const fn text(ok: &'static [&'static str], bad: &'static [&'static str]) -> Kind {
    Kind::Text { ok, bad }
}

/// Every key the model knows, with its documented type and range. Secrets are the `SECRETS`.
const KEYS: &[(&str, Kind)] = &[
    ("server.listen", text(&["127.0.0.1:0", "0.0.0.0:8080", "[::1]:9000"], &["localhost:80", "8080", "", "1.2.3.4"])),
    ("server.node_id", text(&["node-a", "n.1", "A_b"], &["bad node", "", "x:y", "é"])),
    ("server.max_connections", int(U64, 1, U64)),
    ("server.drain_delay_ms", int(U64, 0, U64)),
    ("server.shutdown_grace_ms", int(U64, 0, U64)),
    ("server.drain_jitter_ms", int(U64, 0, U64)),
    (
        "server.allowed_origins",
        Kind::List {
            ok: &["*", "https://*.example.com", "http://localhost:3000"],
            bad: &["example.com", "ftp://x", "https://a/b"],
        },
    ),
    ("server.trusted_proxies", Kind::List { ok: &["10.0.0.0/8", "::1", "192.168.1.1"], bad: &["10.0.0.0/33", "nope"] }),
    ("server.header_timeout_ms", int(U64, 100, 600_000)),
    ("server.body_timeout_ms", int(U64, 100, 600_000)),
    ("server.max_pending_connections", int(U64, 1, 1_000_000)),
    ("limits.max_frame_bytes", int(U64, 1024, 16 << 20)),
    ("limits.publish_rate_per_s", int(U32, 1, U32)),
    ("limits.publish_burst", int(U32, 1, U32)),
    ("limits.max_subscriptions", int(U64, 1, U64)),
    ("limits.outbound_queue", int(U64, 16, 1_000_000)),
    ("limits.outbound_queue_bytes", int(U64, 1 << 16, 1 << 30)),
    ("limits.max_reply_bytes", int(U64, 0, U64)),
    ("limits.write_timeout_ms", int(U64, 100, 600_000)),
    ("limits.command_rate_per_s", int(U32, 1, U32)),
    ("limits.command_burst", int(U32, 1, U32)),
    ("limits.max_connections_per_user", int(U64, 0, U64)),
    ("limits.connect_rate_per_ip", int(U32, 0, U32)),
    ("limits.heartbeat_s", int(U64, 1, 3600)),
    ("limits.max_violations", int(U32, 1, U32)),
    ("limits.http_publish_rate_per_s", int(U32, 1, U32)),
    ("limits.http_history_rate_per_s", int(U32, 1, U32)),
    ("channels.auto_create", Kind::Bool),
    ("channels.history_size", int(U64, 0, 100_000)),
    ("channels.history_ttl_s", int(U64, 1, 2_592_000)),
    ("channels.dedupe_window_s", int(U64, 1, 86_400)),
    ("channels.replay_page", int(U64, 1, 10_000)),
    ("channels.replay_buffer", int(U64, 1, U64)),
    ("channels.max_channels_per_room", int(U64, 1, U64)),
    ("channels.max_channels", int(U64, 1, U64)),
    ("channels.memory_max_bytes", int(U64, 1 << 20, U64)),
    ("backplane.kind", text(&["memory", "redis"], &["Memory", "kafka"])),
    ("backplane.username", text(&["default", "app"], &[])),
    ("backplane.sentinel_service", text(&["mymaster"], &[])),
    ("backplane.sentinels", Kind::List { ok: &["h:26379", "10.0.0.1:1"], bad: &["h", "h:x"] }),
    ("backplane.key_prefix", text(&["arqonbus", "a", "x.y-z"], &["", "a b", "{x}"])),
    ("backplane.command_timeout_ms", int(U64, 100, 60_000)),
    ("backplane.node_ttl_s", int(U64, 2, 3600)),
    ("backplane.canary_interval_ms", int(U64, 100, 60_000)),
    ("backplane.sweep_interval_ms", int(U64, 100, 600_000)),
    ("backplane.slot_check_interval_ms", int(U64, 100, 600_000)),
    ("backplane.min_replicas_acked", int(U32, 0, 16)),
    ("backplane.wait_timeout_ms", int(U64, 10, 60_000)),
    ("auth.kind", text(&["none", "jwt", "webhook"], &["JWT", "basic"])),
    ("auth.jwt_algorithm", text(&["HS256", "HS384", "RS256", "EdDSA"], &[])),
    ("auth.jwt_issuer", text(&["https://idp.example"], &[])),
    ("auth.jwt_audience", text(&["bus"], &[])),
    ("auth.jwt_leeway_s", int(U64, 0, 300)),
    ("auth.jwks_refresh_s", int(U64, 1, 86_400)),
    ("auth.jwks_timeout_ms", int(U64, 1, 60_000)),
    ("auth.webhook_timeout_ms", int(U64, 1, 60_000)),
    ("auth.webhook_cache_s", int(U64, 0, 86_400)),
    ("log.format", text(&["text", "json"], &["xml"])),
    ("log.level", text(&["info", "debug", "arqonbus=debug,info", "warn"], &["arqonbus=bogus", "[{", "="])),
];

/// Keys whose values `arqonbus config` masks.
const SECRETS: &[(&str, Kind)] = &[
    ("auth.jwt_secret", text(&["0123456789abcdef0123456789abcdef"], &["short-secret"])),
    ("auth.webhook_url", text(&["https://auth.example/check"], &["ftp://auth.example/check"])),
    ("backplane.url", text(&["redis://127.0.0.1:6379", "rediss-cluster://h:1?node=h:2"], &["http://x", "redis:/x"])),
    ("backplane.password", text(&["redis-password"], &[])),
    ("http.api_key", text(&["legacy-key-0123456789"], &["short"])),
];

/// A value to set: how TOML and the environment write it, and (when it has one that the
/// configuration can hold) the value it must load as.
#[derive(Debug, Clone)]
struct Val {
    toml: String,
    env: String,
    /// What `serde_json::to_value(config)` shows for it; `None`: refused by its type.
    loaded: Option<Value>,
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn string_val(s: &str) -> Val {
    Val { toml: quoted(s), env: s.to_owned(), loaded: Some(Value::from(s)) }
}

fn int_val(n: u64) -> Val {
    Val { toml: n.to_string(), env: n.to_string(), loaded: Some(Value::from(n)) }
}

fn refused_by_type(toml: &str, env: &str) -> Val {
    Val { toml: toml.to_owned(), env: env.to_owned(), loaded: None }
}

/// Any value for a key of `kind`: mostly in range, often at or past an edge, sometimes of
/// another type.
fn value(kind: Kind) -> BoxedStrategy<Val> {
    let mut wrong = vec![("1.5", "1.5"), ("-1", "-1"), ("[1]", "[1]")];
    if !matches!(kind, Kind::Text { .. }) {
        wrong.push(("\"abc\"", "abc"));
    }
    let wrong = prop::sample::select(wrong).prop_map(|(t, e)| refused_by_type(t, e));
    match kind {
        Kind::Int { max, lo, hi } => {
            let edges = vec![lo.saturating_sub(1), lo, hi, hi.saturating_add(1), max, i64::MAX as u64, 0];
            let over = if max == U64 { "18446744073709551616".to_owned() } else { (max + 1).to_string() };
            prop_oneof![
                24 => (lo..=hi.min(lo.saturating_add(1 << 24))).prop_map(int_val),
                3 => prop::sample::select(edges).prop_map(int_val),
                1 => any::<u64>().prop_map(int_val),
                1 => Just(refused_by_type(&over, &over)),
                1 => wrong,
            ]
            .boxed()
        }
        Kind::Bool => prop_oneof![
            12 => any::<bool>().prop_map(|b| Val { toml: b.to_string(), env: b.to_string(), loaded: Some(b.into()) }),
            1 => wrong,
        ]
        .boxed(),
        Kind::Text { ok, bad } => {
            let bad = if bad.is_empty() { ok } else { bad };
            prop_oneof![
                16 => prop::sample::select(ok).prop_map(string_val),
                2 => prop::sample::select(bad).prop_map(string_val),
                1 => wrong,
            ]
            .boxed()
        }
        Kind::List { ok, bad } => {
            let pool: Vec<&str> = ok.iter().chain(ok).chain(ok).chain(ok).chain(bad).copied().collect();
            let list = vec(prop::sample::select(pool), 0..3).prop_map(|items| {
                let toml = format!("[{}]", items.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(","));
                Val { env: toml.clone(), toml, loaded: Some(Value::from(items)) }
            });
            prop_oneof![16 => list, 1 => wrong].boxed()
        }
    }
}

/// Where a value is set.
#[derive(Debug, Clone)]
enum Source {
    File(Val),
    Env(Val),
    /// Both; the environment wins.
    Both(Val, Val),
}

impl Source {
    fn effective(&self) -> &Val {
        match self {
            Self::File(v) | Self::Env(v) | Self::Both(_, v) => v,
        }
    }
}

fn source(kind: Kind) -> impl Strategy<Value = Source> {
    prop_oneof![
        3 => value(kind).prop_map(Source::File),
        3 => value(kind).prop_map(Source::Env),
        1 => (value(kind), value(kind)).prop_map(|(f, e)| Source::Both(f, e)),
    ]
}

/// A generated configuration: known keys with their sources, and keys that do not exist.
#[derive(Debug, Clone)]
struct Case {
    set: Vec<(&'static str, Source)>,
    unknown: Vec<(String, bool)>,
    default_file: bool,
}

/// Up to `n` distinct keys of `table`, each with a source.
fn keys(table: &'static [(&'static str, Kind)], n: usize) -> impl Strategy<Value = Vec<(&'static str, Source)>> {
    vec(0..table.len(), 0..=n).prop_flat_map(move |mut idx| {
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter().map(|i| source(table[i].1).prop_map(move |s| (table[i].0, s))).collect::<Vec<_>>()
    })
}

fn unknown_key() -> impl Strategy<Value = String> {
    prop_oneof!["(server|limits|channels|log)\\.[a-z]{1,12}", "[a-z]{1,10}", Just("limits.max_frame_byte".to_owned()),]
}

fn case(with_secrets: bool) -> impl Strategy<Value = Case> {
    let secrets = if with_secrets { 3 } else { 0 };
    (keys(KEYS, 8), keys(SECRETS, secrets), vec((unknown_key(), any::<bool>()), 0..2), any::<bool>()).prop_map(
        |(mut set, secrets, unknown, default_file)| {
            set.extend(secrets);
            Case { set, unknown, default_file }
        },
    )
}

fn kind_of(key: &str) -> Option<Kind> {
    KEYS.iter().chain(SECRETS).find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

/// Whether a TOML file cannot even hold this literal (integers stop at `i64::MAX`).
fn unreadable_in_toml(v: &Val) -> bool {
    v.toml.bytes().all(|b| b.is_ascii_digit()) && v.toml.parse::<i64>().is_err()
}

fn valid(kind: Kind, v: &Value) -> bool {
    match (kind, v) {
        // A configuration file holds integers up to i64::MAX: no key may hold more.
        (Kind::Int { max, lo, hi }, Value::Number(n)) => {
            n.as_u64().is_some_and(|n| n <= max && (lo..=hi).contains(&n) && n <= i64::MAX as u64)
        }
        (Kind::Bool, Value::Bool(_)) => true,
        (Kind::Text { ok, .. }, Value::String(s)) => ok.contains(&s.as_str()),
        (Kind::List { ok, .. }, Value::Array(items)) => {
            items.iter().all(|i| i.as_str().is_some_and(|s| ok.contains(&s)))
        }
        _ => false,
    }
}

/// The keys a refusal may name; empty when the configuration is valid.
fn offending(case: &Case) -> BTreeSet<String> {
    // An `ARQONBUS_X` variable without `__` is not a setting (other tools use the prefix too).
    let setting = |(k, in_file): &(String, bool)| *in_file || k.contains('.');
    let mut bad: BTreeSet<String> = case.unknown.iter().filter(|u| setting(u)).map(|(k, _)| k.clone()).collect();
    let loaded: std::collections::HashMap<&str, Value> =
        case.set.iter().filter_map(|(k, src)| src.effective().loaded.clone().map(|v| (*k, v))).collect();
    let webhook = loaded.get("auth.kind").and_then(Value::as_str) == Some("webhook");
    for (key, src) in &case.set {
        let file_unreadable = match src {
            Source::File(f) | Source::Both(f, _) => unreadable_in_toml(f),
            Source::Env(_) => false,
        };
        let kind = kind_of(key).unwrap_or(Kind::Bool);
        let ok = match &src.effective().loaded {
            None => false,
            // The webhook URL is checked only where it is used.
            Some(_) if *key == "auth.webhook_url" && !webhook => true,
            Some(v) => valid(kind, v),
        };
        if file_unreadable || !ok {
            bad.insert((*key).to_owned());
        }
    }
    let num = |k: &str, default: u64| loaded.get(k).and_then(Value::as_u64).unwrap_or(default);
    let text = |k: &str| loaded.get(k).and_then(Value::as_str);
    let (frame, queue, reply) = (
        num("limits.max_frame_bytes", 65_536),
        num("limits.outbound_queue_bytes", 1 << 20),
        num("limits.max_reply_bytes", 1 << 20),
    );
    let largest_event = frame.saturating_add(8192);
    if queue < largest_event {
        bad.insert("limits.outbound_queue_bytes".into());
    }
    if reply > queue || reply < largest_event {
        bad.insert("limits.max_reply_bytes".into());
    }
    let sentinels = loaded.get("backplane.sentinels").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    if text("backplane.kind") == Some("memory") && (loaded.contains_key("backplane.url") || sentinels) {
        bad.insert("backplane.kind".into());
    }
    if sentinels != loaded.contains_key("backplane.sentinel_service") {
        bad.insert("backplane.sentinels".into());
    }
    let redis = match text("backplane.kind") {
        Some(kind) => kind == "redis",
        None => loaded.contains_key("backplane.url") || sentinels,
    };
    if num("backplane.min_replicas_acked", 0) > 0 && !redis {
        bad.insert("backplane.min_replicas_acked".into());
    }
    if num("backplane.min_replicas_acked", 0) > 0
        && num("backplane.wait_timeout_ms", 1000) >= num("backplane.command_timeout_ms", 2000)
    {
        bad.insert("backplane.wait_timeout_ms".into());
    }
    let secret = loaded.contains_key("auth.jwt_secret");
    let auth = match text("auth.kind").unwrap_or("none") {
        "jwt" if !secret => Some("auth.jwt_secret"),
        "jwt" if text("auth.jwt_algorithm").is_some_and(|a| !a.starts_with("HS")) => Some("auth.jwt_algorithm"),
        "webhook" if !loaded.contains_key("auth.webhook_url") => Some("auth.webhook_url"),
        _ => None,
    };
    bad.extend(auth.map(str::to_owned));
    if secret && text("auth.kind") != Some("jwt") {
        bad.insert("auth.kind".into());
    }
    bad
}

fn env_name(path: &str) -> String {
    format!("ARQONBUS_{}", path.replace('.', "__").to_uppercase())
}

/// The TOML file of a case: top-level keys first, then one table per section.
fn file_text(case: &Case) -> String {
    let mut entries: Vec<(&str, String)> = Vec::new();
    for (key, src) in &case.set {
        if let Source::File(v) | Source::Both(v, _) = src {
            entries.push((key, v.toml.clone()));
        }
    }
    entries.extend(case.unknown.iter().filter(|(_, in_file)| *in_file).map(|(k, _)| (k.as_str(), "1".to_owned())));
    let mut out = String::new();
    for (k, v) in entries.iter().filter(|(k, _)| !k.contains('.')) {
        out.push_str(&format!("{k} = {v}\n"));
    }
    let sections: BTreeSet<&str> = entries.iter().filter_map(|(k, _)| k.split_once('.').map(|(s, _)| s)).collect();
    for section in sections {
        out.push_str(&format!("[{section}]\n"));
        for (k, v) in &entries {
            if let Some(leaf) = k.strip_prefix(section).and_then(|r| r.strip_prefix('.')) {
                out.push_str(&format!("{leaf} = {v}\n"));
            }
        }
    }
    out
}

/// Whether the refusal `msg` names `key`: by its dotted path, or in the quoted line of a TOML
/// syntax error.
fn names(msg: &str, key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    msg.contains(key) || (msg.contains("TOML parse error") && msg.contains(leaf))
}

fn check(jail: &mut figment::Jail, case: &Case) -> Result<(), TestCaseError> {
    jail.clear_env();
    for (key, src) in &case.set {
        if let Source::Env(v) | Source::Both(_, v) = src {
            jail.set_env(env_name(key), &v.env);
        }
    }
    for (k, _) in case.unknown.iter().filter(|(_, in_file)| !in_file) {
        jail.set_env(env_name(k), "1");
    }
    let text = file_text(case);
    let file = if text.is_empty() {
        None
    } else if case.default_file {
        jail.create_file("arqonbus.toml", &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        None
    } else {
        jail.create_file("given.toml", &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        Some(Path::new("given.toml"))
    };
    let bad = offending(case);
    let loaded = Config::load(file);
    let config = match loaded {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!bad.is_empty(), "refused a valid configuration: {}\n{}", msg, text);
            prop_assert!(bad.iter().any(|k| names(&msg, k)), "{} names none of {:?}", msg, bad);
            return Ok(());
        }
        Ok(c) => c,
    };
    prop_assert!(bad.is_empty(), "accepted, but {:?} should have been refused\n{}", bad, text);
    config.validate().map_err(|e| TestCaseError::fail(format!("loaded, yet: {e}")))?;
    let shown = serde_json::to_value(&config).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let printed = config.to_toml();
    let secrets: Vec<&str> = case.set.iter().map(|(k, _)| *k).filter(|k| SECRETS.iter().any(|(s, _)| s == k)).collect();
    for (key, src) in &case.set {
        let at = format!("/{}", key.replace('.', "/"));
        let want = if secrets.contains(key) { Some(Value::from("********")) } else { src.effective().loaded.clone() };
        prop_assert_eq!(shown.pointer(&at), want.as_ref(), "{}", key);
        if let (true, Some(Value::String(s))) = (secrets.contains(key), &src.effective().loaded) {
            prop_assert!(!printed.contains(s.as_str()), "secret {} printed", key);
        }
    }
    if secrets.is_empty() {
        // What `arqonbus config` prints is a configuration file that loads the same values.
        jail.clear_env();
        jail.create_file("printed.toml", &printed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = Config::load(Some(Path::new("printed.toml")))
            .map_err(|e| TestCaseError::fail(format!("{e}\nprinted:\n{printed}")))?;
        let again = serde_json::to_value(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, shown, "printed:\n{}", printed);
    }
    Ok(())
}

/// Runs `check` in a jail of its own.
fn jailed(f: impl FnOnce(&mut figment::Jail) -> Result<(), TestCaseError>) -> Result<(), TestCaseError> {
    let mut outcome = Ok(());
    figment::Jail::try_with(|jail| {
        outcome = f(jail);
        Ok(())
    })
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    outcome
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn configurations_follow_the_model(case in case(true)) {
        jailed(|jail| check(jail, &case))?;
    }
}

/// Key paths of every shape: real sections and keys, unknown ones, odd characters.
fn path() -> impl Strategy<Value = Vec<String>> {
    let real: Vec<String> = KEYS.iter().chain(SECRETS).map(|(k, _)| (*k).to_owned()).collect();
    let real = prop::sample::select(real).prop_map(|k| k.split('.').map(str::to_owned).collect::<Vec<_>>());
    let segment = prop_oneof![
        prop::sample::select(vec!["server", "limits", "auth", "http", "api_keys", "listen", "kind"])
            .prop_map(str::to_owned),
        "[a-z_]{0,8}",
        any::<String>(),
    ];
    prop_oneof![2 => real, 1 => vec(segment, 1..4)]
}

fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        (0i64..70_000).prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        any::<String>().prop_map(toml::Value::String),
        prop::sample::select(vec!["memory", "jwt", "webhook", "*", "info", "127.0.0.1:0", "publish"])
            .prop_map(|s| toml::Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            vec(("[a-z_]{1,8}", inner), 0..4).prop_map(|kv| toml::Value::Table(kv.into_iter().collect())),
        ]
    })
}

/// Sets `value` at `path` in `table`, replacing whatever is in the way.
fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [leaf] => drop(table.insert(leaf.clone(), value)),
        [head, rest @ ..] => {
            let entry = table.entry(head.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                insert(t, rest, value);
            }
        }
    }
}

fn env_var() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        path().prop_map(|p| format!("ARQONBUS_{}", p.join("__").to_uppercase())),
        "ARQONBUS_[A-Za-z0-9_]{0,24}",
    ];
    let quoted = ("[\"\\[{]", "\\PC{0,6}", "\\PC{0,6}").prop_map(|(open, a, b)| format!("{open}{a}\\{b}\""));
    let value = prop_oneof!["\\PC{0,24}", "[0-9]{1,22}", quoted, Just("[\"*\"]".to_owned()), Just("{a=1}".to_owned())];
    (name.prop_filter("a variable name", |n| !n.contains(['=', '\0']) && !n.trim().is_empty()), value)
}

/// Whether figment would drop this variable: its key has an empty part (`ARQONBUS_A____B`).
/// The key figment reads from a variable's name (settings are those with a `.`).
fn env_key(name: &str) -> String {
    name.trim()["ARQONBUS_".len()..].replace("__", ".").trim().to_ascii_lowercase()
}

/// Whether a setting's key has an empty part (`ARQONBUS_A____B`), which figment would skip.
fn names_no_key(name: &str) -> bool {
    let key = env_key(name);
    key.contains('.') && key.split('.').any(str::is_empty)
}

proptest! {
    #![proptest_config(config(600))]

    /// Arbitrary keys and values, in the file and the environment: loading never panics, a
    /// refusal names a key that was set, and what is accepted prints as a file that loads the
    /// same.
    #[test]
    fn arbitrary_keys_and_values_are_refused_by_name_or_round_trip(
        file in vec((path(), toml_value()), 0..4),
        env in vec(env_var(), 0..3),
    ) {
        let mut table = toml::Table::new();
        for (p, v) in &file {
            insert(&mut table, p, v.clone());
        }
        let Ok(text) = toml::to_string(&table) else { return Ok(()) };
        jailed(|jail| {
            jail.clear_env();
            for (k, v) in &env {
                jail.set_env(k, v);
            }
            jail.create_file("given.toml", &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let set: Vec<String> = file.iter().map(|(p, _)| p.join("."))
                .chain(env.iter().map(|(k, _)| env_key(k)))
                .collect();
            match Config::load(Some(Path::new("given.toml"))) {
                Err(e) => {
                    let msg = e.to_string();
                    let named = |k: &String| {
                        let parts: Vec<&str> = k.split('.').collect();
                        (1..=parts.len()).any(|n| msg.contains(&parts[..n].join(".")))
                    };
                    prop_assert!(set.iter().any(named) || env.iter().any(|(k, _)| msg.contains(k.trim())), "{} names none of {:?}", msg, set);
                }
                Ok(config) => {
                    let bad: Vec<&String> = env.iter().map(|(k, _)| k).filter(|k| names_no_key(k)).collect();
                    prop_assert!(bad.is_empty(), "{:?} names no key, yet it was accepted", bad);
                    let printed = config.to_toml();
                    prop_assert!(!printed.starts_with('#'), "{}", printed);
                    if !printed.contains("********") {
                        jail.clear_env();
                        jail.create_file("printed.toml", &printed).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let again = Config::load(Some(Path::new("printed.toml"))).map_err(|e| TestCaseError::fail(format!("{e}\n{printed}")))?;
                        prop_assert_eq!(again.to_toml(), printed);
                    }
                }
            }
            Ok(())
        })?;
    }
}

/// The generator is not vacuous: the model accepts a good share of the cases (whose values
/// are then checked and printed back) and refuses many, for reasons of every kind.
#[test]
fn generated_configurations_are_accepted_and_refused() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = case(true);
    let (mut accepted, mut refused) = (0, BTreeSet::new());
    for _ in 0..2000 {
        let Ok(tree) = strategy.new_tree(&mut runner) else { continue };
        let bad = offending(&tree.current());
        if bad.is_empty() {
            accepted += 1;
        }
        refused.extend(bad);
    }
    assert!(accepted > 200, "only {accepted} of 2000 accepted");
    for key in ["limits.max_reply_bytes", "backplane.kind", "auth.jwt_secret", "auth.kind", "server.listen"] {
        assert!(refused.contains(key), "{key} never refused: {refused:?}");
    }
}
