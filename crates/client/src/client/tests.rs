use super::*;
use crate::config::ClientConfig;

fn quick() -> ClientConfig {
    ClientConfig {
        attempts_max: 3,
        call_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(200),
        retry_backoff: Duration::from_millis(1),
        retry_backoff_max: Duration::from_millis(2),
    }
}

/// A port on which nothing listens: bound, then closed.
fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

#[tokio::test]
async fn connect_validates_endpoints() {
    assert_eq!(
        Client::connect(vec![]).unwrap_err().code(),
        "invalid_argument"
    );
    assert_eq!(
        Client::connect(vec!["https://a:1".into()])
            .unwrap_err()
            .code(),
        "invalid_argument"
    );
    let c = Client::connect(vec!["a:1,b:2".into()]).unwrap();
    assert_eq!(c.endpoints(), ["http://a:1", "http://b:2"]);
    let zero = ClientConfig {
        attempts_max: 0,
        ..quick()
    };
    assert!(Client::connect_with(vec!["a:1".into()], zero).is_err());
}

#[tokio::test]
async fn dead_endpoints_fail_over_then_give_up() {
    let c = Client::connect_with(vec![dead_endpoint(), dead_endpoint()], quick()).unwrap();
    let e = c.get("k", Consistency::Linearizable).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Exhausted { attempts: 3, .. }),
        "{e:?}"
    );
    assert_eq!(e.code(), "unavailable");
    let e = c.cluster_view().await.unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    // A write that is not idempotent still fails over when nothing was reached.
    let e = c.cas("k", None, "v").await.unwrap_err();
    assert!(matches!(e, ClientError::Exhausted { .. }), "{e:?}");
}

#[test]
fn request_ids_differ() {
    assert_ne!(next_request_id(), next_request_id());
    assert!(MetadataValue::try_from(next_request_id().as_str()).is_ok());
}

#[test]
fn wire_integers_are_checked() {
    assert_eq!(to_wire("limit", 5).unwrap(), 5);
    assert!(to_wire("limit", u64::MAX).is_err());
    let h = pb::ResponseHeader {
        revision: -3,
        ..Default::default()
    };
    assert_eq!(header_revision(Some(&h)), 0);
    assert_eq!(header_revision(None), 0);
}
