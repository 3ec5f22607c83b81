//! Extractors whose rejections are problem documents instead of axum's plain-text bodies.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// A JSON body; malformed JSON, a wrong content type or a body over the limit get a 4xx problem.
/// Integer fields also take integer-valued numbers written as floats (`4194304.0`): JSON
/// Schema, which the OpenAPI document uses, counts them as integers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(Self)
    }
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    let essence = essence.to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

/// The whole body, within the body limit.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(e.status(), "too-large", "the request body is too large")
        } else {
            ApiError::bad_request(e.body_text())
        }
    })
}

/// `bytes` as a `T`. When that fails on the shape of the data, the top-level fields that are
/// integer-valued floats are read again as integers: only a body that would otherwise be
/// refused is changed, so values kept verbatim (event data) are never rewritten.
///
/// Every body the API takes is a JSON object, as the document says: serde would also fill a
/// struct from an array of its field values (`["a.b"]` as `{"type": "a.b"}`, `[]` as all
/// defaults), so any other well-formed JSON value is refused here.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(_) | Err(JsonRejection::JsonDataError(_)) if !is_object(bytes) => Err(not_an_object()),
        Ok(axum::Json(v)) => Ok(v),
        Err(e @ JsonRejection::JsonDataError(_)) => {
            let retry = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(integral_fields)
                .and_then(|v| serde_json::from_value::<T>(v).ok());
            retry.ok_or_else(|| json_rejection(e))
        }
        Err(e) => Err(json_rejection(e)),
    }
}

/// Whether well-formed JSON `bytes` hold an object (rather than an array, a string...).
fn is_object(bytes: &[u8]) -> bool {
    bytes.trim_ascii_start().first() == Some(&b'{')
}

fn not_an_object() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-body",
        "the body must be a JSON object",
    )
}

/// `v` with its top-level integer-valued floats as integers; `None` when nothing changes.
fn integral_fields(mut v: serde_json::Value) -> Option<serde_json::Value> {
    let mut changed = false;
    for field in v.as_object_mut()?.values_mut() {
        if let Some(n) = field.as_number().and_then(integral) {
            *field = serde_json::Value::Number(n);
            changed = true;
        }
    }
    changed.then_some(v)
}

/// A float with no fractional part that fits an `i64` or `u64`, as an integer.
fn integral(n: &serde_json::Number) -> Option<serde_json::Number> {
    if !n.is_f64() {
        return None;
    }
    let f = n.as_f64()?;
    if f.fract() != 0.0 || !f.is_finite() {
        return None;
    }
    // 2^63 and 2^64 are exact as floats: the bounds are checked without rounding.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if (-TWO_63..TWO_63).contains(&f) {
        #[allow(clippy::cast_possible_truncation)]
        return Some(serde_json::Number::from(f as i64));
    }
    if (0.0..2.0 * TWO_63).contains(&f) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        return Some(serde_json::Number::from(f as u64));
    }
    None
}

fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "send the body as JSON with Content-Type: application/json",
    )
}

fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => not_json(),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("malformed JSON: {}", e.body_text()))
        }
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            e.body_text(),
        ),
        JsonRejection::BytesRejection(e) => {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "too-large", "the request body is too large")
            } else {
                ApiError::bad_request(e.body_text())
            }
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// Query parameters; unknown enum values or malformed numbers get a 400 problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("invalid query: {}", e.body_text()))
}

/// Path parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(e) => Err(path_rejection(e)),
        }
    }
}

fn path_rejection(e: PathRejection) -> ApiError {
    ApiError::bad_request(format!("invalid path: {}", e.body_text()))
}

/// An optional JSON body: no body (or `null`) means `T::default()`; a body must be valid JSON
/// for `T`. Document it as `request_body = Option<T>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        // The document describes an optional body as absent or `null`.
        if bytes.trim_ascii().is_empty() || bytes.trim_ascii() == b"null" {
            return Ok(Self(T::default()));
        }
        parse_json(&bytes).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        id: Option<i64>,
        index: Option<u32>,
        data: Option<serde_json::Value>,
    }

    #[test]
    fn integer_valued_floats_are_integers() {
        let b: Body = parse_json(br#"{"id": 4194304.0, "index": 2.0}"#).unwrap();
        assert_eq!((b.id, b.index), (Some(4_194_304), Some(2)));
        let b: Body = parse_json(br#"{"id": -1e3}"#).unwrap();
        assert_eq!(b.id, Some(-1000));
    }

    #[test]
    fn other_numbers_are_still_refused() {
        for body in [
            &br#"{"id": 1.5}"#[..],
            br#"{"index": -1.0}"#,
            br#"{"id": 1e300}"#,
            br#"{"id": "1"}"#,
            br#"{"id": 1.0, "other": 1}"#,
        ] {
            let e = parse_json::<Body>(body).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{body:?}");
        }
    }

    #[test]
    fn bodies_are_objects() {
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Flags {
            #[serde(default)]
            dry_run: bool,
        }
        for body in [&b"[]"[..], b" [true]", b"\"x\"", b"1", b"true"] {
            let e = parse_json::<Flags>(body).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{body:?}");
        }
        let e = parse_json::<Body>(b"[1, 2]").unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        // Malformed JSON is still a syntax error, and objects are read as before.
        let e = parse_json::<Flags>(b"[").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let flags = parse_json::<Flags>(b" {\"dry_run\": true}").unwrap();
        assert!(flags.dry_run);
    }

    #[test]
    fn values_kept_verbatim_are_not_rewritten() {
        let b: Body = parse_json(br#"{"id": 1, "data": 2.0}"#).unwrap();
        assert_eq!(b.data, Some(serde_json::json!(2.0)));
        assert!(b.data.unwrap().is_f64());
    }

    #[test]
    fn content_types() {
        let mut h = axum::http::HeaderMap::new();
        assert!(!is_json(&h));
        for (ct, want) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/problem+json", true),
            ("text/json", false),
            ("application/jsonx", false),
            ("text/plain", false),
        ] {
            h.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static(ct),
            );
            assert_eq!(is_json(&h), want, "{ct}");
        }
    }
}
