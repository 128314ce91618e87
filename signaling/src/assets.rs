//! The demo page, embedded in the binary: `/` serves `index.html`, `/assets/{file}` every
//! file of `signaling/assets/`.
//!
//! `build.rs` generates the table from the folder, so adding or changing a demo file needs no
//! Rust change (only a rebuild).

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::rest::AppError;

/// (file name, bytes, content type) for every file of `signaling/assets/`.
pub const FILES: &[(&str, &[u8], &str)] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_file_is_embedded_with_its_content_type() {
        let index = FILES.iter().find(|(n, _, _)| *n == "index.html");
        let (_, bytes, ctype) = index.expect("index.html is embedded");
        assert!(!bytes.is_empty());
        assert_eq!(*ctype, "text/html; charset=utf-8");
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/assets"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().is_file())
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(
            FILES.len(),
            on_disk,
            "one entry per file of signaling/assets/"
        );
    }
}
