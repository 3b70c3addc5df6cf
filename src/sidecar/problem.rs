//! Every error the sidecar returns is an RFC 9457 problem document with a stable `type`.
//! Internal details (SQL, Firestore errors) go to the log, never into the response.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// RFC 9457 problem details (`application/problem+json`); `type` is
/// `urn:firesfu:problem:<slug>`: the OpenAPI schema of every error response.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    #[serde(rename = "type")]
    #[schema(example = "urn:firesfu:problem:validation-failed")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    /// The stable part of `type`: `urn:firesfu:problem:{slug}`.
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            slug,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn validation(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "validation-failed",
            "The request is not valid",
            detail,
        )
    }

    pub fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            "send `Authorization: Bearer <access token>` from POST /v1/sessions",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    pub fn not_found(what: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("no such {what}"),
        )
    }

    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the error was logged",
        )
    }

    pub fn unavailable(what: &str) -> Problem {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
            format!("{what} is not reachable; try again"),
        );
        p.retry_after = Some(2);
        p
    }

    pub fn type_uri(&self) -> String {
        format!("urn:firesfu:problem:{}", self.slug)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": self.type_uri(),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// 503 with `Retry-After`: a bounded resource (password hashing, image decoding) is at capacity.
pub fn overloaded(retry_after_secs: u64) -> Problem {
    let mut p = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "Too busy",
        "the server is at capacity for this kind of request; try again shortly",
    );
    p.retry_after = Some(retry_after_secs.max(1));
    p
}

impl From<super::passwords::Busy> for Problem {
    fn from(busy: super::passwords::Busy) -> Problem {
        overloaded(busy.retry_after.as_secs())
    }
}

impl From<sqlx::Error> for Problem {
    fn from(e: sqlx::Error) -> Problem {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => {
                tracing::warn!("database unreachable: {e}");
                Problem::unavailable("the database")
            }
            sqlx::Error::Database(db)
                if db
                    .code()
                    .as_deref()
                    .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) =>
            {
                tracing::warn!("database unavailable: {e}");
                Problem::unavailable("the database")
            }
            _ => {
                tracing::error!("database error: {e}");
                Problem::internal()
            }
        }
    }
}

impl From<firestore::errors::FirestoreError> for Problem {
    fn from(e: firestore::errors::FirestoreError) -> Problem {
        tracing::warn!("firestore error: {e}");
        Problem::unavailable("Firestore")
    }
}

impl From<crate::docdb::DbError> for Problem {
    fn from(e: crate::docdb::DbError) -> Problem {
        tracing::warn!("firestore error: {e}");
        Problem::unavailable("Firestore")
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Problem {
        match r {
            JsonRejection::MissingJsonContentType(_) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "Request body too large",
                    "the body exceeds the size limit of this route",
                )
            }
            other => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-body",
                "Malformed body",
                other.body_text(),
            ),
        }
    }
}

pub type ApiResult<T> = Result<T, Problem>;
