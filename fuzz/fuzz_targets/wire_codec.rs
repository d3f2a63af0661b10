//! The postcard payloads nodes exchange and store: node RPC bodies (`admin.init`'s cluster map,
//! `admin.join`, `kv.forward` and its reply, `admin.status`'s report), a range's log command and
//! a group's snapshot (`GroupState`), decoded from arbitrary bytes.
//!
//! Byte 0 picks the type; the rest is the payload. Properties: decoding never panics and never
//! allocates beyond what the input can describe (libFuzzer's `-rss_limit_mb` and
//! `-malloc_limit_mb` catch that); whatever decodes re-encodes to a canonical form that decodes
//! and re-encodes to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_node::messages::{ForwardRequest, GroupReply, Hello, JoinRequest, NodeReport};
use meridian_state::{ClusterMap, Command, GroupState, KvEntry};
use meridian_types::MeridianError;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    let Ok(v) = postcard::from_bytes::<T>(bytes) else {
        return;
    };
    let enc = postcard::to_allocvec(&v).expect("a decoded value encodes");
    let again: T = postcard::from_bytes(&enc).expect("a re-encoded value decodes");
    let enc2 = postcard::to_allocvec(&again).expect("encodes again");
    assert_eq!(
        enc,
        enc2,
        "{}: encoding is not canonical",
        std::any::type_name::<T>()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 9 {
        0 => round_trip::<ClusterMap>(rest),
        1 => round_trip::<JoinRequest>(rest),
        2 => round_trip::<ForwardRequest>(rest),
        3 => round_trip::<Result<GroupReply, MeridianError>>(rest),
        4 => round_trip::<NodeReport>(rest),
        5 => round_trip::<Hello>(rest),
        6 => round_trip::<Command>(rest),
        7 => round_trip::<KvEntry>(rest),
        _ => round_trip::<GroupState>(rest),
    }
});
