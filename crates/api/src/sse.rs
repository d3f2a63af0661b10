//! The reading side of server-sent events, as the `/v1/watch` and `follow` routes frame them:
//! for clients in this repository (the CLI's `kv watch`, the simulation's watcher).

/// One server-sent event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// Takes the complete events off the front of `buf` (an event ends with a blank line); a
/// partial event stays for the next bytes. Comments (keep-alives) are skipped.
pub fn take_events(buf: &mut Vec<u8>) -> Vec<SseEvent> {
    let mut out = Vec::new();
    while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
        let block: Vec<u8> = buf.drain(..end + 2).collect();
        let text = String::from_utf8_lossy(&block);
        let mut ev = SseEvent::default();
        for line in text.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => ev.event = value.to_string(),
                "data" => {
                    if !ev.data.is_empty() {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(value);
                }
                "id" => ev.id = Some(value.to_string()),
                _ => {} // comments and unknown fields
            }
        }
        if !ev.event.is_empty() || !ev.data.is_empty() {
            out.push(ev);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_at_blank_lines_and_partial_ones_wait() {
        let mut buf = b": keep-alive\n\nevent: put\ndata: {\"a\":1}\nid: 7\n\nevent: pro".to_vec();
        let evs = take_events(&mut buf);
        assert_eq!(
            evs,
            vec![SseEvent {
                event: "put".into(),
                data: "{\"a\":1}".into(),
                id: Some("7".into())
            }]
        );
        assert_eq!(buf, b"event: pro");
        buf.extend_from_slice(b"gress\ndata: {}\n\n");
        assert_eq!(take_events(&mut buf)[0].event, "progress");
        assert!(buf.is_empty());
    }
}
