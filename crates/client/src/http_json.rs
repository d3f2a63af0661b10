//! The HTTP/JSON side of the client: `GET` of a JSON route (the cluster view) and the mapping of
//! HTTP errors to [`ClientError`]s.

use crate::error::ClientError;

/// `GET {base}{path}` decoded as JSON; error bodies (`{"error":{"code","message"}}`) become
/// [`ClientError::Server`].
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    base: &str,
    path: &str,
) -> Result<T, ClientError> {
    let url = format!("{base}{path}");
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| http_error(base, &e))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| http_error(base, &e))?;
    if !status.is_success() {
        return Err(error_body(status, &body));
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::MalformedResponse {
        endpoint: base.to_owned(),
        message: format!("decode {path}: {e}"),
    })
}

fn http_error(endpoint: &str, e: &reqwest::Error) -> ClientError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    ClientError::Connect {
        endpoint: endpoint.to_owned(),
        message,
    }
}

/// The error of a non-2xx HTTP answer: the JSON error's code when there is one.
fn error_body(status: reqwest::StatusCode, body: &[u8]) -> ClientError {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => ClientError::Server {
            code: b.error.code,
            message: b.error.message,
        },
        Err(_) => {
            let code = if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                "unavailable"
            } else if status == reqwest::StatusCode::NOT_FOUND {
                "not_found"
            } else {
                "internal"
            };
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            ClientError::Server {
                code: code.to_owned(),
                message: format!("HTTP {status}: {text}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_error_bodies_keep_their_code() {
        let body = br#"{"error":{"code":"not_initialized","message":"no cluster yet"}}"#;
        let e = error_body(reqwest::StatusCode::SERVICE_UNAVAILABLE, body);
        assert_eq!(
            (e.code(), e.message().as_str()),
            ("not_initialized", "no cluster yet")
        );
        let e = error_body(reqwest::StatusCode::SERVICE_UNAVAILABLE, b"<html>");
        assert_eq!(e.code(), "unavailable");
        let e = error_body(reqwest::StatusCode::BAD_GATEWAY, b"");
        assert_eq!(e.code(), "internal");
    }
}
