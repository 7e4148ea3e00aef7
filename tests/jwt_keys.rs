//! JWTs signed with public-key algorithms: RS256, ES256 and EdDSA with a PEM public key, alg
//! confusion, and key files that stop start-up. JWK sets are in `tests/jwks.rs`.
//!
//! The keys are fixed test-only keys under `tests/fixtures/jwt/`.

mod common;
mod jwt_support;

use arqonbus::config::{AuthKind, Config};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use jwt_support::*;
use serde_json::json;

fn pem_config(public_key: &str, algorithm: Option<&str>) -> Config {
    let mut c = config();
    c.auth.kind = AuthKind::Jwt;
    c.auth.jwt_public_key_file = Some(fixture(public_key));
    c.auth.jwt_algorithm = algorithm.map(str::to_owned);
    c
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_are_accepted_with_a_pem_key() {
    let cases = [
        ("rsa_a.pub", Algorithm::RS256, rsa_key("a"), rsa_key("b")),
        ("ec_a.pub", Algorithm::ES256, ec_key("a"), ec_key("b")),
        ("ed_a.pub", Algorithm::EdDSA, ed_key("a"), ed_key("b")),
    ];
    for (public, alg, key, other) in cases {
        let node = start(pem_config(public, None)).await;
        let addr = node.addr();
        let c = Client::connect_with(addr, Some(&sign(alg, None, &key, claims("alice", 3600)))).await;
        let c = c.unwrap_or_else(|s| panic!("{alg:?} refused with {s}"));
        assert_eq!(c.welcome["payload"]["user"], "alice");
        // A kid is irrelevant with a single key.
        assert!(Client::connect_with(addr, Some(&sign(alg, Some("any"), &key, claims("bob", 60)))).await.is_ok());
        let invalid = (401, json!({"error":{"code":"UNAUTHORIZED","message":"invalid token"}}));
        // Signed by another key of the same kind, or expired: refused, and the body says no more.
        let forged = sign(alg, None, &other, claims("alice", 3600));
        assert_eq!(refused_handshake(addr, Some(&forged)).await, invalid, "{alg:?} another key");
        let expired = sign(alg, None, &key, claims("alice", -5));
        assert_eq!(refused_handshake(addr, Some(&expired)).await, invalid, "{alg:?} expired");
    }
}

#[tokio::test]
async fn the_algorithm_comes_from_the_key_never_from_the_token() {
    let node = start(pem_config("rsa_a.pub", None)).await;
    let addr = node.addr();
    let pem = std::fs::read(fixture("rsa_a.pub")).unwrap();
    // The classic confusion: HS256 with the RSA public key (PEM or DER) as the HMAC secret.
    for secret in [pem.clone(), pem_der(&pem)] {
        let t = sign(Algorithm::HS256, None, &EncodingKey::from_secret(&secret), claims("mallory", 3600));
        assert_eq!(Client::connect_with(addr, Some(&t)).await.err(), Some(401));
    }
    // Another algorithm of the same family is not this key's algorithm either.
    let ps = sign(Algorithm::PS256, None, &rsa_key("a"), claims("mallory", 3600));
    assert_eq!(Client::connect_with(addr, Some(&ps)).await.err(), Some(401));
    // Unsigned tokens.
    let body = b64(&json!({"sub":"mallory","exp": now() + 3600}).to_string());
    for alg in ["none", "None", "HS256"] {
        let t = format!("{}.{body}.", b64(&json!({ "alg": alg, "typ": "JWT" }).to_string()));
        assert_eq!(Client::connect_with(addr, Some(&t)).await.err(), Some(401), "{alg}");
    }
    // auth.jwt_algorithm narrows the family to one algorithm: PS256 only.
    let node = start(pem_config("rsa_a.pub", Some("PS256"))).await;
    assert!(Client::connect_with(node.addr(), Some(&ps)).await.is_ok());
    let rs = sign(Algorithm::RS256, None, &rsa_key("a"), claims("alice", 3600));
    assert_eq!(Client::connect_with(node.addr(), Some(&rs)).await.err(), Some(401));
}

#[tokio::test]
async fn an_unusable_key_file_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap();
    let cases = [
        (fixture("rsa_a.key"), None, "private key"),
        (garbage, None, "not a public key"),
        (fixture("ec_a.pub"), Some("RS256"), "cannot verify RS256"),
    ];
    for (file, alg, reason) in cases {
        let mut c = pem_config("rsa_a.pub", alg);
        c.auth.jwt_public_key_file = Some(file.clone());
        let e = arqonbus::app::start(c).await.err().expect("start-up fails");
        assert!(e.is_config(), "{e}");
        let text = e.to_string();
        assert!(text.contains("auth.jwt_public_key_file") && text.contains(reason), "{file:?}: {text}");
    }
    // The binary exits with 64, as for any other configuration error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_arqonbus"))
        .arg("serve")
        .env_clear()
        .env("ARQONBUS_SERVER__LISTEN", "127.0.0.1:0")
        .env("ARQONBUS_AUTH__KIND", "jwt")
        .env("ARQONBUS_AUTH__JWT_PUBLIC_KEY_FILE", fixture("ed_a.key"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("auth.jwt_public_key_file") && stderr.contains("private key"), "{stderr}");
}
