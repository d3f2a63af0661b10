//! `/v1/leases`: grant, list, time-to-live (with keys), keep-alive and revoke a lease.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/leases` `{"ttl":S,"id"?:N}` | grant; `{"id","ttl"}` |
//! | `GET /v1/leases` | `{"leases":[id,...]}` |
//! | `GET /v1/leases/{id}?keys=true` | `{"id","ttl","granted_ttl","keys"?}` (404 `lease_not_found`) |
//! | `POST /v1/leases/{id}/keepalive` | restart the TTL; `{"id","ttl"}` |
//! | `DELETE /v1/leases/{id}` | revoke: its keys are deleted when this answers |
//!
//! Ids are decimal, or hexadecimal with `0x` (as `etcdctl` prints them).

use super::error::HttpError;
use super::json::parse_body;
use crate::observe::observed;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use meridian_node::ClientApi;
use meridian_types::MeridianError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantJson {
    ttl: i64,
    #[serde(default)]
    id: i64,
}

/// A lease and its time to live in seconds.
#[derive(Debug, Serialize)]
pub struct LeaseJson {
    pub id: i64,
    pub ttl: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_ttl: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlQuery {
    #[serde(default)]
    keys: bool,
}

fn lease_id(s: &str) -> Result<i64, MeridianError> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| MeridianError::invalid(format!("lease id {s:?} is not a number")))
}

/// `POST /v1/leases`.
pub async fn grant<A: ClientApi>(
    State(api): State<A>,
    body: Bytes,
) -> Result<Json<LeaseJson>, HttpError> {
    let res = observed(&api, "lease_grant", async {
        let g: GrantJson = parse_body(&body)?;
        let (id, ttl) = api.lease_grant(g.id, g.ttl).await?;
        Ok(LeaseJson {
            id,
            ttl,
            granted_ttl: None,
            keys: None,
        })
    })
    .await?;
    Ok(Json(res))
}

/// `GET /v1/leases`.
pub async fn list<A: ClientApi>(
    State(api): State<A>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let ids = observed(&api, "lease_leases", api.lease_list()).await?;
    Ok(Json(serde_json::json!({ "leases": ids })))
}

/// `GET /v1/leases/{id}`.
pub async fn time_to_live<A: ClientApi>(
    State(api): State<A>,
    Path(id): Path<String>,
    Query(q): Query<TtlQuery>,
) -> Result<Json<LeaseJson>, HttpError> {
    let res = observed(&api, "lease_time_to_live", async {
        let info = api.lease_time_to_live(lease_id(&id)?, q.keys).await?;
        Ok(LeaseJson {
            id: info.id,
            ttl: info.ttl_s,
            granted_ttl: Some(info.granted_ttl_s),
            keys: q.keys.then(|| {
                info.keys
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect()
            }),
        })
    })
    .await?;
    Ok(Json(res))
}

/// `POST /v1/leases/{id}/keepalive`.
pub async fn keep_alive<A: ClientApi>(
    State(api): State<A>,
    Path(id): Path<String>,
) -> Result<Json<LeaseJson>, HttpError> {
    let res = observed(&api, "lease_keep_alive", async {
        let id = lease_id(&id)?;
        let ttl = api.lease_keep_alive(id).await?;
        Ok(LeaseJson {
            id,
            ttl,
            granted_ttl: None,
            keys: None,
        })
    })
    .await?;
    Ok(Json(res))
}

/// `DELETE /v1/leases/{id}`.
pub async fn revoke<A: ClientApi>(
    State(api): State<A>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let id = observed(&api, "lease_revoke", async {
        let id = lease_id(&id)?;
        api.lease_revoke(id).await?;
        Ok(id)
    })
    .await?;
    Ok(Json(serde_json::json!({ "revoked": id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_decimal_or_hex() {
        assert_eq!(lease_id("42").unwrap(), 42);
        assert_eq!(lease_id("0x2a").unwrap(), 42);
        assert!(lease_id("x").is_err());
        assert!(lease_id("0xzz").is_err());
    }
}
