//! The CLI's HTTP/JSON caller: one request to the first endpoint that answers, an API error
//! answer turned into `code: message` (the commands print it as `error: code: message`).
//!
//! Used by the commands the gRPC client does not cover (streams, queues, placement, leases,
//! watches, drain/remove).

use anyhow::{Context, bail};
use serde_json::Value;
use std::time::Duration;

/// How long one call may take, besides any wait the request asks the server for.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The nodes a command talks to, tried in order.
pub struct HttpApi {
    http: reqwest::Client,
    endpoints: Vec<String>,
}

impl HttpApi {
    pub fn new(endpoints: Vec<String>) -> anyhow::Result<Self> {
        // No client-wide timeout: each call sets its own, a watch has none.
        let http = reqwest::Client::builder().build()?;
        Ok(Self { http, endpoints })
    }

    /// `http://ep/<segments...>?<query>`; each segment is percent-encoded as one segment (a
    /// key or prefix holding `/` stays one).
    pub fn url(
        ep: &str,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<reqwest::Url> {
        let base = if ep.starts_with("http") {
            ep.to_string()
        } else {
            format!("http://{ep}")
        };
        let mut url =
            reqwest::Url::parse(&base).with_context(|| format!("parse endpoint {ep:?}"))?;
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|_| anyhow::anyhow!("endpoint {ep:?} cannot take a path"))?;
            segs.clear();
            for s in segments {
                segs.push(s);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// Sends one request; `wait` is how long the server may hold it (a long poll) on top of
    /// [`CALL_TIMEOUT`]. Another endpoint is tried when one cannot be reached, or answers a
    /// 503 (it has no leader or is not initialised: nothing was done); any other error answer
    /// is final (a timeout may have been applied, so it is not sent again).
    pub async fn call(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        wait: Duration,
    ) -> anyhow::Result<Value> {
        let mut last = None;
        for ep in &self.endpoints {
            let url = Self::url(ep, segments, query)?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .timeout(CALL_TIMEOUT + wait);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = Some(anyhow::anyhow!("{ep}: {e}"));
                    continue;
                }
            };
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("{ep} answered {status} with a body that is not JSON"))?;
            if status.is_success() {
                return Ok(v);
            }
            let (code, msg) = error_of(&v);
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                last = Some(anyhow::anyhow!("{code}: {msg}"));
                continue;
            }
            bail!("{code}: {msg}");
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no endpoints given")))
    }

    /// Opens a long-lived GET (server-sent events) on the first endpoint that answers with
    /// success, starting the search at endpoint `from` (a reconnect tries the next node first).
    /// An error answer other than 503 is final (`Err`); when no node could take it, the caller
    /// may try again later.
    pub async fn open(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        from: usize,
    ) -> anyhow::Result<Opened> {
        let n = self.endpoints.len();
        let mut last = None;
        for i in (0..n).map(|k| (from + k) % n) {
            let ep = &self.endpoints[i];
            let url = Self::url(ep, segments, query)?;
            let resp = match self.http.get(url).send().await {
                Ok(r) => r,
                Err(e) => {
                    last = Some(anyhow::anyhow!("{ep}: {e}"));
                    continue;
                }
            };
            if resp.status().is_success() {
                return Ok(Opened::Stream(resp, i));
            }
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or_default();
            let (code, msg) = error_of(&v);
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                last = Some(anyhow::anyhow!("{code}: {msg}"));
                continue;
            }
            bail!("{code}: {msg}");
        }
        match last {
            Some(e) => Ok(Opened::Unreachable(e)),
            None => bail!("no endpoints given"),
        }
    }
}

/// What [`HttpApi::open`] got.
pub enum Opened {
    /// The response (its body streams) and the index of the endpoint that gave it.
    Stream(reqwest::Response, usize),
    /// No node could take it now (unreachable, or 503): the last reason.
    Unreachable(anyhow::Error),
}

/// The `code` and `message` of an API error answer.
fn error_of(v: &Value) -> (&str, &str) {
    (
        v["error"]["code"].as_str().unwrap_or("unknown"),
        v["error"]["message"].as_str().unwrap_or(""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_each_segment_whole() {
        let u = HttpApi::url(
            "127.0.0.1:2379",
            &["v1", "placement", "eu/a b"],
            &[("keys", "true".into())],
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:2379/v1/placement/eu%2Fa%20b?keys=true"
        );
        let u = HttpApi::url("h:1", &["v1", "placement", ""], &[]).unwrap();
        assert_eq!(u.as_str(), "http://h:1/v1/placement/");
        let u = HttpApi::url("http://h:1/", &["v1", "leases"], &[]).unwrap();
        assert_eq!(u.as_str(), "http://h:1/v1/leases");
    }
}
