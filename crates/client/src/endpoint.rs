//! Endpoint addresses as users write them (`127.0.0.1:2379`, `http://node1:2379`) and the
//! lazily connected gRPC channels to them.

use crate::error::ClientError;
use std::time::Duration;
use tonic::transport::Channel;

/// The port assumed when an endpoint names none: etcd's client port.
pub const DEFAULT_PORT: u16 = 2379;

/// How often an idle HTTP/2 connection is pinged, so a dead peer is noticed between calls.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a keep-alive ping may go unanswered before the connection is dropped.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses one endpoint: adds `http://` when no scheme is given and the default port when none
/// is named. Returns the base URL without a trailing slash, e.g. `http://127.0.0.1:2379`.
pub fn parse_endpoint(raw: &str) -> Result<String, ClientError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(ClientError::InvalidArgument(
            "an endpoint is empty".to_owned(),
        ));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let uri: http::Uri = with_scheme
        .parse()
        .map_err(|e| ClientError::InvalidArgument(format!("endpoint {raw:?}: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(ClientError::InvalidArgument(format!(
                "endpoint {raw:?}: TLS (https) is not supported yet; use http://"
            )));
        }
        _ => {
            return Err(ClientError::InvalidArgument(format!(
                "endpoint {raw:?}: the scheme must be http"
            )));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(ClientError::InvalidArgument(format!(
            "endpoint {raw:?} names no host"
        )));
    };
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(ClientError::InvalidArgument(format!(
            "endpoint {raw:?}: expected host:port"
        )));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(ClientError::InvalidArgument(format!(
            "endpoint {raw:?} must not have a path or query"
        )));
    }
    let after_host = &authority.as_str()[authority.host().len()..];
    if after_host.is_empty() {
        return Ok(format!("http://{authority}:{DEFAULT_PORT}"));
    }
    match after_host.strip_prefix(':').map(str::parse::<u16>) {
        Some(Ok(_)) => Ok(format!("http://{authority}")),
        _ => Err(ClientError::InvalidArgument(format!(
            "endpoint {raw:?}: the port must be a number from 0 to 65535"
        ))),
    }
}

/// Parses a list of endpoints; also splits entries on commas, so `["a:1,b:2"]` is two.
pub fn parse_endpoints<S: AsRef<str>>(raw: &[S]) -> Result<Vec<String>, ClientError> {
    let parsed: Vec<String> = raw
        .iter()
        .flat_map(|s| s.as_ref().split(','))
        .filter(|s| !s.trim().is_empty())
        .map(parse_endpoint)
        .collect::<Result<_, _>>()?;
    if parsed.is_empty() {
        return Err(ClientError::InvalidArgument(
            "no endpoints given".to_owned(),
        ));
    }
    Ok(parsed)
}

/// A gRPC channel (one HTTP/2 connection) to a parsed endpoint. It connects on first use and
/// reconnects after a failure, so creating it never waits. Must be called inside a tokio
/// runtime.
pub fn lazy_channel(endpoint: &str, connect_timeout: Duration) -> Result<Channel, ClientError> {
    let ep = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| ClientError::InvalidArgument(format!("endpoint {endpoint:?}: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    Ok(ep.connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_scheme_and_port() {
        assert_eq!(
            parse_endpoint("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            parse_endpoint(" http://node1:4000/ ").unwrap(),
            "http://node1:4000"
        );
        assert_eq!(
            parse_endpoint("localhost").unwrap(),
            "http://localhost:2379"
        );
        assert_eq!(parse_endpoint("[::1]:5").unwrap(), "http://[::1]:5");
        assert_eq!(parse_endpoint("[::1]").unwrap(), "http://[::1]:2379");
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            "",
            "  ",
            "https://a:1",
            "ftp://a:1",
            "a:1/path",
            "a:1?x=1",
            "a:notaport",
            "u@a:1",
        ] {
            let e = parse_endpoint(bad).expect_err(bad);
            assert_eq!(e.code(), "invalid_argument", "{bad}");
        }
    }

    #[test]
    fn lists_split_on_commas() {
        let eps = parse_endpoints(&["a:1,b:2", "c:3"]).unwrap();
        assert_eq!(eps, ["http://a:1", "http://b:2", "http://c:3"]);
        assert!(parse_endpoints::<&str>(&[]).is_err());
        assert!(parse_endpoints(&[","]).is_err());
    }

    #[tokio::test]
    async fn channels_are_lazy() {
        // Nothing listens on port 1; creating the channel must not fail or wait.
        assert!(lazy_channel("http://127.0.0.1:1", Duration::from_millis(10)).is_ok());
    }
}
