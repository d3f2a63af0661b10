//! The JSON shapes of keys and values. Keys and values are UTF-8 strings when both are valid
//! UTF-8; otherwise both are base64 and the object says `"encoding":"base64"`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use meridian_state::KeyValue;
use meridian_types::MeridianError;
use serde::{Deserialize, Serialize};

/// How keys and values of one JSON object (or query string) are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Plain UTF-8 strings. The default.
    #[default]
    Utf8,
    /// Standard base64 with padding, for bytes that are not UTF-8.
    Base64,
}

impl Encoding {
    /// Decodes a key or value written in this encoding.
    pub fn decode(self, field: &str, s: &str) -> Result<Vec<u8>, MeridianError> {
        match self {
            Encoding::Utf8 => Ok(s.as_bytes().to_vec()),
            Encoding::Base64 => BASE64
                .decode(s)
                .map_err(|e| MeridianError::invalid(format!("{field} is not valid base64: {e}"))),
        }
    }
}

/// One key-value pair as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct KvJson {
    pub key: String,
    /// Absent for `keys_only` reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
    pub lease: i64,
    /// `"base64"` when the key or the value is not UTF-8; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
}

impl KvJson {
    pub fn new(kv: &KeyValue, keys_only: bool) -> Self {
        let value = (!keys_only).then_some(kv.value.as_slice());
        let utf8 = std::str::from_utf8(&kv.key).is_ok()
            && value.is_none_or(|v| std::str::from_utf8(v).is_ok());
        let text = |bytes: &[u8]| {
            if utf8 {
                String::from_utf8_lossy(bytes).into_owned()
            } else {
                BASE64.encode(bytes)
            }
        };
        Self {
            key: text(&kv.key),
            value: value.map(text),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
            encoding: (!utf8).then_some(Encoding::Base64),
        }
    }

    pub fn list(kvs: &[KeyValue], keys_only: bool) -> Vec<Self> {
        kvs.iter().map(|kv| Self::new(kv, keys_only)).collect()
    }
}

/// Parses a JSON object request body, mapping every failure to `invalid_argument`. (serde
/// would also take a struct from a JSON array; a body must be an object.)
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, MeridianError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(MeridianError::invalid("request body must be a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|e| MeridianError::invalid(format!("malformed JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &[u8], value: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            lease: 0,
        }
    }

    #[test]
    fn utf8_pairs_are_plain_strings() {
        let j = serde_json::to_value(KvJson::new(&kv(b"k", b"v"), false)).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"key":"k","value":"v","create_revision":2,"mod_revision":3,
                "version":2,"lease":0})
        );
    }

    #[test]
    fn binary_value_makes_the_object_base64() {
        let j = serde_json::to_value(KvJson::new(&kv(b"k", b"\xff\x00"), false)).unwrap();
        assert_eq!(j["encoding"], "base64");
        assert_eq!(j["key"], "aw==");
        assert_eq!(j["value"], "/wA=");
    }

    #[test]
    fn keys_only_omits_the_value() {
        let j = serde_json::to_value(KvJson::new(&kv(b"k", b"\xff"), true)).unwrap();
        assert!(j.get("value").is_none());
        assert!(j.get("encoding").is_none());
    }

    #[test]
    fn bodies_must_be_objects() {
        #[derive(Debug, Deserialize)]
        struct Empty {}
        assert!(parse_body::<Empty>(b" {}").is_ok());
        for bad in [&b""[..], b"[]", b"null", b"{", b"{} x"] {
            assert!(parse_body::<Empty>(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base64_decoding_rejects_garbage() {
        assert_eq!(Encoding::Base64.decode("key", "aw==").unwrap(), b"k");
        assert!(Encoding::Base64.decode("key", "***").is_err());
    }
}
