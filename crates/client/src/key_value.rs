//! One key with its value and revisions, as a client sees it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use meridian_proto::etcd::mvccpb;
use serde::ser::SerializeMap;

/// One key with its value and revisions.
///
/// Serialises to the HTTP API's JSON shape: key and value as UTF-8 strings when both are
/// valid UTF-8, else both base64 with `"encoding":"base64"`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last delete).
    pub create_revision: u64,
    /// Revision of the latest write to the key.
    pub mod_revision: u64,
    /// Number of writes since the key was created.
    pub version: u64,
    /// Lease id the key is attached to; 0 for none.
    pub lease: i64,
}

impl KeyValue {
    /// The key as text, lossy for bytes that are not UTF-8.
    pub fn key_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.key)
    }

    /// The value as text, lossy for bytes that are not UTF-8.
    pub fn value_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }
}

impl From<mvccpb::KeyValue> for KeyValue {
    fn from(kv: mvccpb::KeyValue) -> Self {
        Self {
            key: kv.key,
            value: kv.value,
            // etcd's revisions are signed on the wire but never negative.
            create_revision: u64::try_from(kv.create_revision).unwrap_or(0),
            mod_revision: u64::try_from(kv.mod_revision).unwrap_or(0),
            version: u64::try_from(kv.version).unwrap_or(0),
            lease: kv.lease,
        }
    }
}

impl serde::Serialize for KeyValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let utf8 =
            std::str::from_utf8(&self.key).is_ok() && std::str::from_utf8(&self.value).is_ok();
        let text = |bytes: &[u8]| {
            if utf8 {
                String::from_utf8_lossy(bytes).into_owned()
            } else {
                BASE64.encode(bytes)
            }
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("key", &text(&self.key))?;
        map.serialize_entry("value", &text(&self.value))?;
        map.serialize_entry("create_revision", &self.create_revision)?;
        map.serialize_entry("mod_revision", &self.mod_revision)?;
        map.serialize_entry("version", &self.version)?;
        map.serialize_entry("lease", &self.lease)?;
        if !utf8 {
            map.serialize_entry("encoding", "base64")?;
        }
        map.end()
    }
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
    fn utf8_is_plain_json() {
        let j = serde_json::to_value(kv(b"k", b"v")).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"key":"k","value":"v","create_revision":2,"mod_revision":3,
                "version":2,"lease":0})
        );
    }

    #[test]
    fn binary_makes_both_base64() {
        let j = serde_json::to_value(kv(b"k", b"\xff\x00")).unwrap();
        assert_eq!(j["encoding"], "base64");
        assert_eq!(j["key"], "aw==");
        assert_eq!(j["value"], "/wA=");
    }

    #[test]
    fn negative_wire_revisions_become_zero() {
        let wire = mvccpb::KeyValue {
            key: b"k".to_vec(),
            create_revision: -1,
            ..Default::default()
        };
        assert_eq!(KeyValue::from(wire).create_revision, 0);
    }
}
