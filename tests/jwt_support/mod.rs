//! Signing tokens with the test-only keys of `tests/fixtures/jwt/`.
#![allow(dead_code)]

use std::path::PathBuf;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The path of a fixture file.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt").join(name)
}

/// The DER inside a PEM text.
pub fn pem_der(pem: &[u8]) -> Vec<u8> {
    spki::der::pem::decode_vec(pem).expect("PEM").1
}

fn der_of(name: &str) -> Vec<u8> {
    pem_der(&std::fs::read(fixture(name)).expect("fixture"))
}

/// RSA private key `rsa_<which>.key` (PKCS#1).
pub fn rsa_key(which: &str) -> EncodingKey {
    EncodingKey::from_rsa_der(&der_of(&format!("rsa_{which}.key")))
}

/// EC P-256 private key `ec_<which>.key` (PKCS#8).
pub fn ec_key(which: &str) -> EncodingKey {
    EncodingKey::from_ec_der(&der_of(&format!("ec_{which}.key")))
}

/// Ed25519 private key `ed_<which>.key` (PKCS#8).
pub fn ed_key(which: &str) -> EncodingKey {
    EncodingKey::from_ed_der(&der_of(&format!("ed_{which}.key")))
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `sub` with an `exp` `ttl_s` from now and every permission on `science`.
pub fn claims(sub: &str, ttl_s: i64) -> Value {
    json!({ "sub": sub, "exp": now() + ttl_s, "arqonbus": {"subscribe": ["science:*"], "publish": ["science:*"]} })
}

/// A token with header `alg` (and `kid`), signed with `key`.
pub fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &claims, key).expect("signs")
}

/// The public JWK of a private key, with its `kid` and `alg`.
pub fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).expect("a JWK");
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).expect("JSON")
}

/// Base64url without padding, as in a JWT.
pub fn b64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}
