//! The built-in endpoints: `/healthz`, `/metrics` and `/status` (paths
//! configurable).

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

/// Which built-in endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Healthz,
    Metrics,
    Status,
}

/// The configured paths.
#[derive(Debug, Default)]
pub(crate) struct Endpoints {
    healthz: Option<String>,
    metrics: Option<String>,
    status: Option<String>,
}

impl Endpoints {
    pub(crate) fn new(
        healthz: Option<String>,
        metrics: Option<String>,
        status: Option<String>,
    ) -> Endpoints {
        Endpoints {
            healthz,
            metrics,
            status,
        }
    }

    /// The endpoint `GET`/`HEAD` `path` asks for, if any; everything else goes
    /// to the service.
    pub(crate) fn route(&self, method: &Method, path: &str) -> Option<Endpoint> {
        if self.healthz.is_none() && self.metrics.is_none() && self.status.is_none() {
            return None;
        }
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        if self.healthz.as_deref() == Some(path) {
            Some(Endpoint::Healthz)
        } else if self.metrics.as_deref() == Some(path) {
            Some(Endpoint::Metrics)
        } else if self.status.as_deref() == Some(path) {
            Some(Endpoint::Status)
        } else {
            None
        }
    }
}

/// `200 ok` while serving, `503 draining` while draining.
pub(crate) fn healthz(draining: bool) -> Response<Full<Bytes>> {
    let (status, body) = if draining {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    };
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

/// The metrics text.
pub(crate) fn metrics(text: String) -> Response<Full<Bytes>> {
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        Bytes::from(text),
    )
}

/// The status page: JSON for `?format=json`, else HTML.
pub(crate) fn status(query: Option<&str>, worker: &cluster_core::Worker) -> Response<Full<Bytes>> {
    let json = query.is_some_and(|q| q.split('&').any(|pair| pair == "format=json"));
    if json {
        respond(
            StatusCode::OK,
            "application/json",
            Bytes::from(crate::status::json(worker)),
        )
    } else {
        respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from(crate::status::html(worker)),
        )
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_only_get_and_head_on_the_paths() {
        let e = Endpoints::new(
            Some("/healthz".into()),
            Some("/metrics".into()),
            Some("/status".into()),
        );
        assert_eq!(e.route(&Method::GET, "/healthz"), Some(Endpoint::Healthz));
        assert_eq!(e.route(&Method::HEAD, "/metrics"), Some(Endpoint::Metrics));
        assert_eq!(e.route(&Method::GET, "/status"), Some(Endpoint::Status));
        assert_eq!(e.route(&Method::POST, "/healthz"), None);
        assert_eq!(e.route(&Method::GET, "/healthz/x"), None);
        assert_eq!(Endpoints::default().route(&Method::GET, "/healthz"), None);
    }
}
