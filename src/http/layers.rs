//! The middleware of [`super::with_middleware`] as plain tower services.
//!
//! Each layer does its work around the inner service's own future, which it holds in
//! place. Axum's `from_fn` middleware instead clones the whole stack below it and boxes
//! two futures on every request; with the request id, CORS, metrics and limits that was
//! about a tenth of a point read's instructions.
//!
//! - [`Edge`] (around the router): the request id and its span, and CORS ([`cors`]):
//!   preflights answered `204` without routing, every answer's CORS headers.
//! - [`Measured`] (per route, below the router, so the matched route is known): request
//!   metrics around the transport limits and panic recovery.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::FutureExt as _;
use futures_util::future::CatchUnwind;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Timeout};
use tower::{Layer, Service};
use tracing::instrument::{Instrument as _, Instrumented};

use super::track::{RequestMetrics, method_label};
use super::{cors, errors, request_id};
use crate::telemetry::HTTP_PANICS_METRIC;

/// The request id, its span, and CORS (see the module docs).
#[derive(Clone, Debug)]
pub struct Edge<S> {
    inner: S,
    cors: cors::Policy,
}

impl<S> Edge<S> {
    /// `inner` (the router) behind `cors`.
    pub fn new(inner: S, cors: cors::Policy) -> Self {
        Self { inner, cors }
    }
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let id = request_id::adopt(&mut request);
        let allow_origin = self
            .cors
            .allow_origin(request.headers().get(header::ORIGIN));
        if cors::is_preflight(&request) {
            return EdgeFuture {
                answer: EdgeAnswer::Preflight {
                    response: Some(cors::preflight(allow_origin)),
                },
                id: Some(id),
                allow_origin: None,
            };
        }
        let span = request_id::span(&id, &request);
        let inner = span.in_scope(|| self.inner.call(request));
        EdgeFuture {
            answer: EdgeAnswer::Routed {
                inner: inner.instrument(span),
            },
            id: Some(id),
            allow_origin,
        }
    }
}

pin_project! {
    /// [`Edge`]'s answer: the router's, or a preflight's, completed.
    pub struct EdgeFuture<F> {
        #[pin]
        answer: EdgeAnswer<F>,
        id: Option<HeaderValue>,
        allow_origin: Option<HeaderValue>,
    }
}

pin_project! {
    #[project = EdgeAnswerProj]
    enum EdgeAnswer<F> {
        Routed { #[pin] inner: Instrumented<F> },
        Preflight { response: Option<Response> },
    }
}

impl<F> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.answer.project() {
            EdgeAnswerProj::Routed { inner } => {
                let Ok(mut response) = ready!(inner.poll(cx));
                cors::complete(&mut response, this.allow_origin.take());
                response
            }
            EdgeAnswerProj::Preflight { response } => {
                response.take().unwrap_or_else(errors::internal)
            }
        };
        cors::vary(&mut response);
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(request_id::HEADER, id);
        }
        Poll::Ready(Ok(response))
    }
}

/// The transport limits of [`super::with_middleware`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A declared `Content-Length` over this is `413` at once.
    pub max_body_bytes: usize,
    /// A request still running after this is cancelled and answered `408`.
    pub request_timeout: Duration,
}

/// Layer of [`Measured`]; every route's copy shares one set of metric handles.
#[derive(Clone)]
pub struct MeasuredLayer {
    metrics: RequestMetrics,
    limits: Limits,
}

impl MeasuredLayer {
    /// Counts into a fresh [`RequestMetrics`] and enforces `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            metrics: RequestMetrics::default(),
            limits,
        }
    }
}

impl<S> Layer<S> for MeasuredLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Measured<S> {
        Measured {
            inner,
            metrics: self.metrics.clone(),
            limits: self.limits,
        }
    }
}

/// Request metrics by matched route, around the transport limits and panic recovery:
///
/// - a declared `Content-Length` over the limit is `413` at once;
/// - a request still running after the timeout is cancelled (its future dropped) and
///   answered `408` with code `UNAVAILABLE`;
/// - a panicking handler answers `500` with code `INTERNAL` (nothing about the panic is
///   sent), counts `gitstore_http_panics_total`, and the process, the connection and the
///   datastore pool carry on.
#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: RequestMetrics,
    limits: Limits,
}

impl<S> Service<Request> for Measured<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = MeasuredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = method_label(request.method());
        let started = Instant::now();
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let answer = if declared.is_some_and(|len| len > self.limits.max_body_bytes as u64) {
            Answer::Refused {
                response: Some(errors::too_large(self.limits.max_body_bytes)),
            }
        } else {
            match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
                Ok(inner) => Answer::Running {
                    inner: tokio::time::timeout_at(
                        deadline(started, self.limits.request_timeout),
                        AssertUnwindSafe(inner).catch_unwind(),
                    ),
                },
                Err(panic) => Answer::Refused {
                    response: Some(panic_response(panic)),
                },
            }
        };
        MeasuredFuture {
            answer,
            route,
            method,
            started,
            metrics: self.metrics.clone(),
            timeout: self.limits.request_timeout,
        }
    }
}

pin_project! {
    /// [`Measured`]'s answer, counted when it is ready.
    pub struct MeasuredFuture<F> {
        #[pin]
        answer: Answer<F>,
        route: Option<MatchedPath>,
        method: &'static str,
        started: Instant,
        metrics: RequestMetrics,
        timeout: Duration,
    }
}

pin_project! {
    #[project = AnswerProj]
    enum Answer<F> {
        Running { #[pin] inner: Timeout<CatchUnwind<AssertUnwindSafe<F>>> },
        Refused { response: Option<Response> },
    }
}

impl<F> Future for MeasuredFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.answer.project() {
            AnswerProj::Running { inner } => match ready!(inner.poll(cx)) {
                Ok(Ok(Ok(response))) => response,
                Ok(Err(panic)) => panic_response(panic),
                Err(_elapsed) => errors::error_response(
                    StatusCode::REQUEST_TIMEOUT,
                    errors::UNAVAILABLE,
                    format!(
                        "request timed out after {}",
                        humantime::format_duration(*this.timeout)
                    ),
                ),
            },
            AnswerProj::Refused { response } => response.take().unwrap_or_else(errors::internal),
        };
        this.metrics.record(
            this.route.as_ref().map(MatchedPath::as_str),
            this.method,
            response.status().as_u16(),
            this.started.elapsed(),
        );
        Poll::Ready(Ok(response))
    }
}

/// When a request started at `started` times out; a timeout too long to add (the
/// configuration allows any) is as good as none: thirty years.
fn deadline(started: Instant, timeout: Duration) -> Instant {
    started
        .checked_add(timeout)
        .unwrap_or_else(|| started + Duration::from_secs(30 * 365 * 24 * 3600))
}

/// The answer to a panicking handler: a bare `500`; the panic is logged and counted.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".to_owned());
    tracing::error!(panic = %message, "a request handler panicked; answered 500");
    metrics::counter!(HTTP_PANICS_METRIC).increment(1);
    errors::internal()
}
