//! `/api/v1/openapi.json`: the OpenAPI 3.1 document of this API, written by hand
//! (`web/openapi.json`) and tested against the router's routes.

use axum::http::header;
use axum::response::IntoResponse;

/// The document.
pub const DOCUMENT: &str = include_str!("../web/openapi.json");

/// `GET /api/v1/openapi.json`.
pub async fn handler() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// `(method, path)` of every `.route(...)` in `router()`, read from the source.
    fn routes() -> BTreeSet<(String, String)> {
        let source = include_str!("lib.rs");
        let mut out = BTreeSet::new();
        let mut rest = source;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let path = rest.trim_start().strip_prefix('"').unwrap();
            let path = &path[..path.find('"').unwrap()];
            let after = &rest[rest.find(',').unwrap() + 1..];
            let method = after.trim_start();
            let method = &method[..method.find('(').unwrap()];
            out.insert((method.to_string(), path.to_string()));
        }
        out
    }

    #[test]
    fn the_document_describes_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let routes = routes();
        assert!(routes.len() >= 13, "{routes:?}");
        assert_eq!(documented, routes);
    }
}
