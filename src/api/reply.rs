//! Successful responses: JSON bodies with the content type the spec's example shows.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";

pub struct Reply {
    status: StatusCode,
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, HeaderValue)>,
}

impl Reply {
    pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => Reply {
                status,
                body: Some(body),
                headers: Vec::new(),
            },
            Err(_) => Reply {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: Some(br#"{"Code":500,"Text":"Internal server error","Message":"(EInternalError) could not encode the response","Exception":"EInternalError"}"#.to_vec()),
                headers: Vec::new(),
            },
        }
    }

    pub fn ok<T: Serialize>(value: &T) -> Reply {
        Self::json(StatusCode::OK, value)
    }

    /// 202 "Updated" with no body, as the spec's memory commands answer.
    pub fn updated() -> Reply {
        Reply {
            status: StatusCode::ACCEPTED,
            body: None,
            headers: Vec::new(),
        }
    }

    /// Adds a header with a number, e.g. the total of a paged list.
    pub fn with_header(mut self, name: &'static str, value: usize) -> Reply {
        self.headers.push((name, HeaderValue::from(value)));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut r = match self.body {
            Some(b) => {
                let mut r = Response::new(Body::from(b));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(JSON_CONTENT_TYPE),
                );
                r
            }
            None => Response::new(Body::empty()),
        };
        *r.status_mut() = self.status;
        for (name, value) in self.headers {
            r.headers_mut().insert(name, value);
        }
        r
    }
}
