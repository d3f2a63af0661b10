//! `/v1/placement`: list, read, set and delete placement rules.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/placement` | `{"rules":[...]}`, every rule (the implicit default first if none is stored) |
//! | `GET /v1/placement/{prefix}` | the rule for exactly that prefix, 404 `key_not_found` if none |
//! | `PUT /v1/placement/{prefix}` | set it from `{"replicas":3,"regions":[..],"zones":[..],"survival":"region","leader_regions":[..]}` |
//! | `DELETE /v1/placement/{prefix}` | `{"deleted":true}`, or `false` if there was no such rule |
//!
//! The cluster default is the empty prefix: `/v1/placement/` (trailing slash, nothing after).
//! Prefixes are UTF-8 in the path; `?encoding=base64` reads them as base64. In the body only
//! `replicas` is required; lists default to empty (any region, any zone, no leader preference)
//! and `survival` to `zone`. A rule the topology cannot meet is 400 `placement_unsatisfiable`
//! with what is missing; a malformed one is 400 `invalid_argument`.

use super::error::{HttpError, body_error, path_error, query_error};
use super::json::{Encoding, parse_body};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::Uri;
use meridian_node::{ClientApi, PlacementView};
use meridian_state::{PlacementRule, Survival};
use meridian_types::MeridianError;
use serde::{Deserialize, Serialize};

type HttpResult<T> = Result<Json<T>, HttpError>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixQuery {
    #[serde(default)]
    encoding: Encoding,
}

/// The prefix named by the path (`None` for `/v1/placement/`, the empty prefix).
fn prefix_of(
    path: Option<Result<Path<String>, PathRejection>>,
    uri: &Uri,
) -> Result<Vec<u8>, MeridianError> {
    let q: PrefixQuery = Query::try_from_uri(uri).map(|q| q.0).map_err(query_error)?;
    match path {
        None => Ok(Vec::new()),
        Some(p) => {
            let Path(raw) = p.map_err(path_error)?;
            q.encoding.decode("prefix", &raw)
        }
    }
}

/// `GET /v1/placement`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RulesJson {
    pub rules: Vec<PlacementView>,
}

/// The body of `PUT /v1/placement/{prefix}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    pub replicas: u8,
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub zones: Vec<String>,
    /// `zone` (the default) or `region`.
    #[serde(default)]
    pub survival: Option<String>,
    #[serde(default)]
    pub leader_regions: Vec<String>,
}

impl RuleBody {
    fn into_rule(self, prefix: Vec<u8>) -> Result<PlacementRule, MeridianError> {
        let survival = match self.survival.as_deref() {
            None => Survival::default(),
            Some(s) => Survival::parse(s).ok_or_else(|| {
                MeridianError::invalid(format!(
                    "unknown survival {s:?}; expected \"zone\" or \"region\""
                ))
            })?,
        };
        Ok(PlacementRule {
            prefix,
            replicas: self.replicas,
            regions: self.regions,
            zones: self.zones,
            survival,
            leader_regions: self.leader_regions,
        })
    }
}

/// `DELETE /v1/placement/{prefix}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeletedJson {
    pub deleted: bool,
}

pub async fn list<A: ClientApi>(State(api): State<A>) -> HttpResult<RulesJson> {
    Ok(Json(RulesJson {
        rules: api.placements().await?,
    }))
}

pub async fn get_default<A: ClientApi>(
    State(api): State<A>,
    uri: Uri,
) -> HttpResult<PlacementView> {
    get_rule(api, None, uri).await
}

pub async fn get_prefix<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> HttpResult<PlacementView> {
    get_rule(api, Some(path), uri).await
}

async fn get_rule<A: ClientApi>(
    api: A,
    path: Option<Result<Path<String>, PathRejection>>,
    uri: Uri,
) -> HttpResult<PlacementView> {
    let prefix = prefix_of(path, &uri)?;
    Ok(Json(api.placement(prefix).await?))
}

pub async fn put_default<A: ClientApi>(
    State(api): State<A>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> HttpResult<PlacementView> {
    put_rule(api, None, uri, body).await
}

pub async fn put_prefix<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> HttpResult<PlacementView> {
    put_rule(api, Some(path), uri, body).await
}

async fn put_rule<A: ClientApi>(
    api: A,
    path: Option<Result<Path<String>, PathRejection>>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> HttpResult<PlacementView> {
    let prefix = prefix_of(path, &uri)?;
    let body = body.map_err(|r| body_error(r, api.limits().request_bytes_max))?;
    let rule = parse_body::<RuleBody>(&body)?.into_rule(prefix)?;
    Ok(Json(api.set_placement(rule).await?))
}

pub async fn delete_default<A: ClientApi>(
    State(api): State<A>,
    uri: Uri,
) -> HttpResult<DeletedJson> {
    delete_rule(api, None, uri).await
}

pub async fn delete_prefix<A: ClientApi>(
    State(api): State<A>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> HttpResult<DeletedJson> {
    delete_rule(api, Some(path), uri).await
}

async fn delete_rule<A: ClientApi>(
    api: A,
    path: Option<Result<Path<String>, PathRejection>>,
    uri: Uri,
) -> HttpResult<DeletedJson> {
    let prefix = prefix_of(path, &uri)?;
    Ok(Json(DeletedJson {
        deleted: api.delete_placement(prefix).await?,
    }))
}
