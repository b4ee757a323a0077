//! Successful responses: always a JSON body, with the content type the spec's example shows.
//! There is no empty answer: a signature over an empty body would cover the client's QueryID
//! alone (`docs/signing.md`, "Why it is not an oracle").

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";

pub struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    headers: Vec<(&'static str, HeaderValue)>,
}

impl Reply {
    pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => Reply {
                status,
                body,
                headers: Vec::new(),
            },
            Err(_) => Reply {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: br#"{"Code":500,"Text":"Internal server error","Message":"(EInternalError) could not encode the response","Exception":"EInternalError"}"#.to_vec(),
                headers: Vec::new(),
            },
        }
    }

    pub fn ok<T: Serialize>(value: &T) -> Reply {
        Self::json(StatusCode::OK, value)
    }

    /// 202 "Updated" (memory written, passwords changed, memory reset, session closed), with
    /// a body that says what was changed (`wire::Updated`).
    pub fn updated<T: Serialize>(value: &T) -> Reply {
        Self::json(StatusCode::ACCEPTED, value)
    }

    /// Adds a header with a number, e.g. the total of a paged list.
    pub fn with_header(mut self, name: &'static str, value: usize) -> Reply {
        self.headers.push((name, HeaderValue::from(value)));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut r = Response::new(Body::from(self.body));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
        for (name, value) in self.headers {
            r.headers_mut().insert(name, value);
        }
        r
    }
}
