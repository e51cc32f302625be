//! The dashboard: a static page at `/` and its assets under `/assets/`, embedded in the binary
//! (built from `dashboard/`, see its `package.json`; cargo never runs node). The page calls only
//! the public report API with the read key it is given, so it needs no key itself and works over
//! either store.

use axum::extract::Path;
use axum::http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// One embedded file: its name under `/assets/`, content type, bytes, and the same bytes gzipped
/// when the build made a compressed copy (the charting library).
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    gzipped: Option<&'static [u8]>,
}

const INDEX: &str = include_str!("../../dashboard/index.html");

const ASSETS: [Asset; 3] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../dashboard/assets/app.js"),
        gzipped: None,
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../dashboard/assets/style.css"),
        gzipped: None,
    },
    Asset {
        name: "echarts.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../dashboard/assets/echarts.min.js"),
        gzipped: Some(include_bytes!("../../dashboard/assets/echarts.min.js.gz")),
    },
];

/// `GET /`: the dashboard page.
pub(super) async fn index() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

/// `GET /assets/{file}`: one of the dashboard's files, gzipped when the browser takes it.
pub(super) async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == file) else {
        let body = json!({
            "error": "not_found",
            "message": format!("the dashboard has no asset {file:?}"),
        });
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    // Revalidated after five minutes, so a new binary's dashboard shows up without a hard reload.
    let cache = (CACHE_CONTROL, "public, max-age=300");
    let takes_gzip = headers
        .get(ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|coding| coding.trim().starts_with("gzip"))
        });
    match asset.gzipped {
        Some(gzipped) if takes_gzip => (
            [
                (CONTENT_TYPE, asset.content_type),
                (CONTENT_ENCODING, "gzip"),
                (VARY, "accept-encoding"),
                cache,
            ],
            gzipped,
        )
            .into_response(),
        _ => (
            [
                (CONTENT_TYPE, asset.content_type),
                (VARY, "accept-encoding"),
                cache,
            ],
            asset.bytes,
        )
            .into_response(),
    }
}
