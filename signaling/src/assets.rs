//! The demo page, embedded in the binary: `/` serves `index.html`, `/assets/{file}` the rest.
//!
//! To add or change a demo file, edit `signaling/assets/` and (for a new file) add one line
//! to [`FILES`]; no other Rust changes are needed.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::rest::AppError;

/// (name under `/assets/`, bytes, content type).
pub const FILES: &[(&str, &[u8], &str)] = &[(
    "index.html",
    include_bytes!("../assets/index.html"),
    "text/html; charset=utf-8",
)];

fn serve(name: &str) -> Result<Response, AppError> {
    let (_, bytes, ctype) = FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| AppError::not_found("no such asset"))?;
    let mut res = (*bytes).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// `GET /`.
pub async fn index() -> Result<Response, AppError> {
    serve("index.html")
}

/// `GET /assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Result<Response, AppError> {
    serve(&file)
}
