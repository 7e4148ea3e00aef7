//! JWT verification keys: an HMAC secret, a PEM public key or the keys of a JWK set, each bound
//! to the one algorithm it verifies.
//!
//! The algorithm always comes from the key (its JWK `alg`, else its type and curve) or from
//! `auth.jwt_algorithm`, never from a token's header: a token whose `alg` differs from its
//! key's is refused, so it cannot choose a weaker check (no alg confusion, no `none`).

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use spki::der::Decode;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// Smallest RSA modulus accepted: 2048 bits.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// A key and the one algorithm it verifies.
pub struct VerifyKey {
    /// The key.
    pub key: DecodingKey,
    /// The only algorithm a token verified by this key may use.
    pub alg: Algorithm,
}

/// Parses `auth.jwt_algorithm` (validated by the configuration).
pub fn algorithm(name: Option<&str>) -> Result<Option<Algorithm>, String> {
    name.map(|n| n.parse().map_err(|_| format!("auth.jwt_algorithm: unknown algorithm {n}"))).transpose()
}

impl VerifyKey {
    /// An HMAC secret, for HS256 unless `alg` says otherwise.
    pub fn from_secret(secret: &[u8], alg: Option<Algorithm>) -> Result<Self, String> {
        let alg = alg.unwrap_or(Algorithm::HS256);
        if alg.family() != AlgorithmFamily::Hmac {
            return Err(format!("a secret cannot verify {alg:?}"));
        }
        Ok(Self { key: DecodingKey::from_secret(secret), alg })
    }

    /// A PEM public key: `PUBLIC KEY` (SubjectPublicKeyInfo: RSA, EC P-256/P-384, Ed25519) or
    /// `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(pem: &[u8], alg: Option<Algorithm>) -> Result<Self, String> {
        let (label, der) = spki::der::pem::decode_vec(pem).map_err(|e| format!("not a PEM public key: {e}"))?;
        let key = match label {
            "PUBLIC KEY" => from_spki(&der)?,
            "RSA PUBLIC KEY" => DecodingKey::from_rsa_der(&der),
            l if l.contains("PRIVATE") => {
                return Err(format!("holds a private key ({l}); give the public key (openssl pkey -pubout)"))
            }
            l => return Err(format!("holds a {l}, not a PUBLIC KEY")),
        };
        // Through the JWK form: this parses an RSA key and checks an EC point's shape, so that
        // a broken key fails now rather than on every token.
        let jwk = Jwk::from_decoding_key(&key, None).map_err(|e| format!("not a usable public key: {e}"))?;
        Self::from_jwk(&jwk, alg)
    }

    /// One key of a JWK set. `configured` (auth.jwt_algorithm) must agree with the key's `alg`.
    pub fn from_jwk(jwk: &Jwk, configured: Option<Algorithm>) -> Result<Self, String> {
        if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
            return Err("is not a signing key (use is not sig)".into());
        }
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err("is a symmetric (oct) key; HMAC secrets go in auth.jwt_secret".into());
        }
        let declared = jwk
            .common
            .key_algorithm
            .map(|ka| Algorithm::try_from(ka).map_err(|_| format!("algorithm {ka} is not supported")))
            .transpose()?;
        let alg = match (declared, configured) {
            (Some(d), Some(c)) if d != c => return Err(format!("is for {d:?} but auth.jwt_algorithm is {c:?}")),
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => inferred(&jwk.algorithm)?,
        };
        let key = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => DecodingKey::from_rsa_components(&p.n, &p.e),
            AlgorithmParameters::EllipticCurve(p) => DecodingKey::from_ec_components(&p.x, &p.y),
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                DecodingKey::from_ed_components(&p.x)
            }
            _ => return Err("has an unsupported key type or curve".into()),
        }
        .map_err(|e| format!("is malformed: {e}"))?;
        if key.family() != alg.family() {
            return Err(format!("a {:?} key cannot verify {alg:?}", key.family()));
        }
        check_shape(&key, alg)?;
        Ok(Self { key, alg })
    }
}

/// The algorithm a JWK without `alg` is for.
fn inferred(params: &AlgorithmParameters) -> Result<Algorithm, String> {
    match params {
        AlgorithmParameters::RSA(_) => Ok(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Ok(Algorithm::ES256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => Ok(Algorithm::ES384),
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Ok(Algorithm::EdDSA),
        _ => Err("has no alg and no type this server can infer one from".into()),
    }
}

/// Sizes the verifiers rely on, then a trial verification that builds the verifier (an EC
/// point must lie on its curve).
fn check_shape(key: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    let (DecodingKeyKind::SecretOrDer(bytes) | DecodingKeyKind::RsaModulusExponent { n: bytes, .. }) = key.kind();
    let ok = match alg {
        Algorithm::ES256 => bytes.len() == 65,
        Algorithm::ES384 => bytes.len() == 97,
        // The EdDSA verifier slices 32 bytes: anything else must not reach it.
        Algorithm::EdDSA => bytes.len() == 32,
        _ if alg.family() == AlgorithmFamily::Rsa => match key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, .. } => {
                n.iter().skip_while(|b| **b == 0).count() >= MIN_RSA_MODULUS_BYTES
            }
            DecodingKeyKind::SecretOrDer(_) => true,
        },
        _ => true,
    };
    if !ok {
        let need = match alg.family() {
            AlgorithmFamily::Rsa => "a modulus of at least 2048 bits",
            AlgorithmFamily::Ed => "32 bytes",
            _ => "an uncompressed point on its curve",
        };
        return Err(format!("has the wrong size for {alg:?} (it needs {need})"));
    }
    jsonwebtoken::crypto::verify("", b"", key, alg).map(|_| ()).map_err(|e| format!("is not a valid {alg:?} key: {e}"))
}

/// A SubjectPublicKeyInfo (DER) as a key of its own family.
fn from_spki(der: &[u8]) -> Result<DecodingKey, String> {
    let info = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| format!("not a public key: {e}"))?;
    let (oid, params) = info.algorithm.oids().map_err(|e| format!("not a public key: {e}"))?;
    let bits = info.subject_public_key.as_bytes().ok_or("not a public key: bad bit string")?;
    match (oid, params) {
        (RSA_OID, _) => Ok(DecodingKey::from_rsa_der(bits)),
        (EC_OID, Some(P256_OID)) if bits.len() == 65 => Ok(DecodingKey::from_ec_der(bits)),
        (EC_OID, Some(P384_OID)) if bits.len() == 97 => Ok(DecodingKey::from_ec_der(bits)),
        (EC_OID, _) => Err("an EC key must be on P-256 or P-384 (uncompressed)".into()),
        (ED25519_OID, _) => Ok(DecodingKey::from_ed_der(bits)),
        (other, _) => Err(format!("key type {other} is not supported (RSA, EC P-256/P-384, Ed25519)")),
    }
}

/// The usable keys of a JWK set, by `kid`.
pub struct KeySet {
    keys: HashMap<String, Arc<VerifyKey>>,
}

#[derive(serde::Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWK set (`{"keys":[…]}`). Keys that cannot be used (no `kid`, encryption keys,
    /// unsupported types, a repeated `kid`) are left out, each with the reason; a set with no
    /// usable key at all is an error.
    pub fn parse(json: &[u8], configured: Option<Algorithm>) -> Result<(Self, Vec<String>), String> {
        let raw: RawSet = serde_json::from_slice(json).map_err(|e| format!("not a JWK set: {e}"))?;
        let mut keys = HashMap::new();
        let mut skipped = Vec::new();
        for (i, value) in raw.keys.into_iter().enumerate() {
            let jwk: Jwk = match serde_json::from_value(value) {
                Ok(j) => j,
                Err(e) => {
                    skipped.push(format!("key {i}: not a JWK: {e}"));
                    continue;
                }
            };
            let Some(kid) = jwk.common.key_id.clone().filter(|k| !k.is_empty()) else {
                skipped.push(format!("key {i}: has no kid"));
                continue;
            };
            if keys.contains_key(&kid) {
                skipped.push(format!("key {i} ({kid}): the kid appears twice; the first is kept"));
                continue;
            }
            match VerifyKey::from_jwk(&jwk, configured) {
                Ok(k) => {
                    keys.insert(kid, Arc::new(k));
                }
                Err(e) => skipped.push(format!("key {i} ({kid}): {e}")),
            }
        }
        if keys.is_empty() {
            return Err(format!("the JWK set has no usable key ({})", skipped.join("; ")));
        }
        Ok((Self { keys }, skipped))
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        self.keys.get(kid).cloned()
    }

    /// The key ids, sorted (for logs).
    pub fn kids(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::EncodingKey;
    use serde_json::json;

    const RSA_PUB: &[u8] = include_bytes!("../../tests/fixtures/jwt/rsa_a.pub");
    const EC_PUB: &[u8] = include_bytes!("../../tests/fixtures/jwt/ec_a.pub");
    const ED_PUB: &[u8] = include_bytes!("../../tests/fixtures/jwt/ed_a.pub");
    const RSA_KEY: &[u8] = include_bytes!("../../tests/fixtures/jwt/rsa_a.key");
    const ED_KEY: &[u8] = include_bytes!("../../tests/fixtures/jwt/ed_a.key");

    fn der(pem: &[u8]) -> Vec<u8> {
        spki::der::pem::decode_vec(pem).unwrap().1
    }

    /// The public JWK of a private fixture key, as a JSON value.
    fn jwk(enc: &EncodingKey, alg: Algorithm, kid: &str) -> serde_json::Value {
        let mut j = Jwk::from_encoding_key(enc, alg).unwrap();
        j.common.key_id = Some(kid.into());
        serde_json::to_value(j).unwrap()
    }

    #[test]
    fn pem_keys_bring_their_algorithm() {
        assert_eq!(VerifyKey::from_pem(RSA_PUB, None).unwrap().alg, Algorithm::RS256);
        assert_eq!(VerifyKey::from_pem(EC_PUB, None).unwrap().alg, Algorithm::ES256);
        assert_eq!(VerifyKey::from_pem(ED_PUB, None).unwrap().alg, Algorithm::EdDSA);
        // The configured algorithm may pick another of the key's family, never another family.
        assert_eq!(VerifyKey::from_pem(RSA_PUB, Some(Algorithm::PS256)).unwrap().alg, Algorithm::PS256);
        let e = VerifyKey::from_pem(RSA_PUB, Some(Algorithm::ES256)).err().unwrap();
        assert!(e.contains("cannot verify ES256"), "{e}");
        let e = VerifyKey::from_pem(EC_PUB, Some(Algorithm::ES384)).err().unwrap();
        assert!(e.contains("wrong size"), "{e}");
    }

    #[test]
    fn bad_pem_files_are_refused_with_a_reason() {
        let e = VerifyKey::from_pem(RSA_KEY, None).err().unwrap();
        assert!(e.contains("private key"), "{e}");
        let e = VerifyKey::from_pem(ED_KEY, None).err().unwrap();
        assert!(e.contains("private key"), "{e}");
        let e = VerifyKey::from_pem(b"hello", None).err().unwrap();
        assert!(e.contains("not a PEM public key"), "{e}");
        let e =
            VerifyKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", None).err().unwrap();
        assert!(e.contains("not a public key"), "{e}");
        assert!(VerifyKey::from_secret(b"0123456789abcdef0123456789abcdef", Some(Algorithm::RS256)).is_err());
    }

    #[test]
    fn a_key_set_keeps_only_usable_keys() {
        let rsa = EncodingKey::from_rsa_der(&der(RSA_KEY));
        let ed = EncodingKey::from_ed_der(&der(ED_KEY));
        let mut enc_use = jwk(&rsa, Algorithm::RS256, "enc");
        enc_use["use"] = json!("enc");
        let mut no_alg = jwk(&ed, Algorithm::EdDSA, "ed-noalg");
        no_alg.as_object_mut().unwrap().remove("alg");
        let mut short = jwk(&ed, Algorithm::EdDSA, "short");
        short["x"] = json!("AAAAAAAAAAAAAAAAAAAAAA");
        let mut no_kid = jwk(&ed, Algorithm::EdDSA, "x");
        no_kid.as_object_mut().unwrap().remove("kid");
        let set = json!({"keys": [
            jwk(&rsa, Algorithm::RS256, "rsa"),
            jwk(&rsa, Algorithm::RS256, "rsa"),
            no_alg, enc_use, short, no_kid,
            {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
            {"kty":"EC","kid":"bad-point","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
            {"kty":"RSA","kid":"weak","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"no-n"}
        ]});
        let (keys, skipped) = KeySet::parse(set.to_string().as_bytes(), None).unwrap();
        assert_eq!(keys.kids(), ["ed-noalg", "rsa"]);
        assert_eq!(keys.get("rsa").unwrap().alg, Algorithm::RS256);
        assert_eq!(keys.get("ed-noalg").unwrap().alg, Algorithm::EdDSA);
        assert_eq!(skipped.len(), 8, "{skipped:?}");
        for (kid, why) in
            [("enc", "not a signing key"), ("hmac", "symmetric"), ("short", "wrong size"), ("weak", "wrong size")]
        {
            assert!(skipped.iter().any(|s| s.contains(kid) && s.contains(why)), "{kid}: {skipped:?}");
        }
        // With auth.jwt_algorithm set, keys for another algorithm are left out.
        let (keys, _) = KeySet::parse(set.to_string().as_bytes(), Some(Algorithm::EdDSA)).unwrap();
        assert_eq!(keys.kids(), ["ed-noalg"]);
        for bad in ["[]", "{}", "{\"keys\":[]}", "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"a\",\"k\":\"eA\"}]}"] {
            assert!(KeySet::parse(bad.as_bytes(), None).is_err(), "{bad}");
        }
    }
}
