//! Successful responses: JSON bodies with the content type the spec's example shows.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";

pub struct Reply {
    status: StatusCode,
    body: Option<Vec<u8>>,
}

impl Reply {
    pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => Reply {
                status,
                body: Some(body),
            },
            Err(_) => Reply {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: Some(br#"{"Code":500,"Text":"Internal server error","Message":"(EInternalError) could not encode the response","Exception":"EInternalError"}"#.to_vec()),
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
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self.body {
            Some(b) => {
                let mut r = Response::new(Body::from(b));
                *r.status_mut() = self.status;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(JSON_CONTENT_TYPE),
                );
                r
            }
            None => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = self.status;
                r
            }
        }
    }
}
