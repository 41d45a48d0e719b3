//! Usage (API.md §8): this month's metered requests, stored bytes, files and keys, and limits.

use crate::edge::{ApiQuery, Authed};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tenantry_core::service::{UsagePeriod, UsageReport};

/// The caller's tenant's usage this month, or `from`..`to` by `granularity` (the admin page's
/// per-day chart).
#[utoipa::path(get, operation_id = "get_usage", path = "/v1/usage", tag = "usage", params(
        ("from" = Option<String>, Query, description = "YYYY-MM-DD or RFC 3339; default: start of this month"),
        ("to" = Option<String>, Query, description = "exclusive; default: start of next month"),
        ("granularity" = Option<String>, Query, description = "day (default) or month")),
    responses((status = 200, description = "usage and limits (with `series` for a period query)", body = UsageReport)))]
pub async fn own(
    State(state): State<AppState>,
    Authed(caller): Authed,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> ApiResult<Response> {
    Ok(Json(state.svc.usage(&caller, q.period()).await?).into_response())
}

#[derive(Deserialize)]
pub struct PeriodQuery {
    from: Option<String>,
    to: Option<String>,
    granularity: Option<String>,
}

impl PeriodQuery {
    fn period(&self) -> UsagePeriod<'_> {
        UsagePeriod { from: self.from.as_deref(), to: self.to.as_deref(), granularity: self.granularity.as_deref() }
    }
}

#[derive(Deserialize)]
pub struct UsageQuery {
    #[serde(flatten)]
    period: PeriodQuery,
    format: Option<String>,
}

/// Any tenant's usage (operator): this month, or `from`..`to` by `granularity`; `format=csv`
/// gives the billing export.
#[utoipa::path(get, operation_id = "get_tenant_usage", path = "/v1/tenants/{slug}/usage", tag = "usage", params(("slug" = String, Path, description = "the tenant's slug", example = "acme"),
        ("from" = Option<String>, Query, description = "YYYY-MM-DD or RFC 3339; default: start of this month"),
        ("to" = Option<String>, Query, description = "exclusive; default: start of next month"),
        ("granularity" = Option<String>, Query, description = "day (default) or month"),
        ("format" = Option<String>, Query, description = "json (default) or csv")),
    responses((status = 200, description = "usage and limits (with `series` for a period query); with format=csv, text/csv rows tenant,period,api_calls,reads,writes,bytes_in,bytes_out,searches",
        content((UsageReport = "application/json"), (String = "text/csv")))))]
pub async fn tenant(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(slug): Path<String>,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> ApiResult<Response> {
    let csv = match q.format.as_deref() {
        None | Some("") | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::invalid(format!("unknown format {other:?}: use json or csv"))),
    };
    let mut period = q.period.period();
    period.granularity = period.granularity.or(csv.then_some("day"));
    let report = state.svc.tenant_usage(&caller, &slug, period).await?;
    if !csv {
        return Ok(Json(report).into_response());
    }
    let mut out = String::from("tenant,period,api_calls,reads,writes,bytes_in,bytes_out,searches\n");
    for p in report.series.iter().flatten() {
        let c = &p.counters;
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            report.tenant, p.period, c.api_calls, c.reads, c.writes, c.bytes_in, c.bytes_out, c.searches
        ));
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
}
