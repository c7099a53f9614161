//! The HTTP edge shared by Latch's route components: everything a route does
//! that is not its own logic. A component calls [`serve`] with its route's
//! methods and a handler; the handler parses with [`request`], runs domain
//! rules and store queries, and answers with [`response`] or an [`ApiError`].

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod config;
pub mod db;
pub mod email;
pub mod error;
pub mod mfa;
pub mod passwords;
pub mod request;
pub mod response;
pub mod time;

pub use error::ApiError;
pub use http::Method;
pub use request::Ctx;

/// A request with its whole body (route bodies are small and bounded).
pub type Request = http::Request<Vec<u8>>;
/// A response with its whole body.
pub type Response = http::Response<Vec<u8>>;

/// Random bytes from the platform (`wasi:random` inside a component).
pub fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| ApiError::Internal("no randomness available"))?;
    Ok(bytes)
}

/// A new random identifier (22 URL-safe characters).
pub fn new_id() -> Result<String, ApiError> {
    Ok(latch_domain::new_id(random()?))
}

/// The entry point of a route component: reads the whole request, serves
/// it, and sends the response whole ([`latch_send::respond`]: the body is in
/// the host's buffer before the head is handed over, so the answer leaves in
/// one write and a kept-alive client never waits on Nagle's algorithm).
pub async fn run(
    incoming: spin_sdk::http::IncomingRequest,
    out: spin_sdk::http::ResponseOutparam,
    route: &'static str,
    methods: &'static [Method],
    handler: impl AsyncFnOnce(&Ctx, Request) -> Result<Response, ApiError>,
) {
    let (response, head, ctx) = match read_request(incoming, route).await {
        Ok(request) => {
            let head = request.method() == Method::HEAD;
            let ctx = Ctx::new(&request, route);
            (serve(&ctx, request, methods, handler).await, head, ctx)
        }
        Err((error, ctx)) => {
            let mut response = error.into_response(&ctx);
            response::finish(&mut response, &ctx);
            (response, false, ctx)
        }
    };
    send_response(out, response, head);
    // The instance lives on after answering (Spin and latch alike) until
    // this returns: what the answer must not wait for happens now.
    ctx.deliver_letters();
}

/// The whole request; or why it could not be read, with the context its
/// head gives (path, request id), so the problem names the real path.
async fn read_request(
    incoming: spin_sdk::http::IncomingRequest,
    route: &'static str,
) -> Result<Request, (ApiError, Ctx)> {
    use spin_sdk::http::Method as Wasi;
    let method = match incoming.method() {
        Wasi::Get => Method::GET,
        Wasi::Head => Method::HEAD,
        Wasi::Post => Method::POST,
        Wasi::Put => Method::PUT,
        Wasi::Delete => Method::DELETE,
        Wasi::Patch => Method::PATCH,
        Wasi::Options => Method::OPTIONS,
        Wasi::Connect => Method::CONNECT,
        Wasi::Trace => Method::TRACE,
        Wasi::Other(other) => Method::from_bytes(other.as_bytes()).map_err(|_| {
            (
                ApiError::MalformedBody("unknown method".into()),
                Ctx::unreadable(route),
            )
        })?,
    };
    let mut builder = http::Request::builder().method(method).uri(
        incoming
            .path_with_query()
            .unwrap_or_else(|| "/".to_string()),
    );
    let mut declared_length = None;
    for (name, value) in incoming.headers().entries() {
        if name.eq_ignore_ascii_case("content-length") {
            declared_length = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
        }
        builder = builder.header(name, value);
    }
    let head = match builder.body(Vec::new()) {
        Ok(head) => head,
        Err(_) => {
            return Err((
                ApiError::MalformedBody("the request could not be read".into()),
                Ctx::unreadable(route),
            ));
        }
    };
    match read_body(incoming, declared_length, request::MAX_JSON_BODY).await {
        Ok(body) => Ok(head.map(|_| body)),
        Err(error) => Err((error, Ctx::new(&head, route))),
    }
}

/// The request body, at most `limit` bytes: 413 as soon as the declared
/// length or what arrives says it is larger. Spin 3.6.3 sets no limit of its
/// own, so without this a client could make the instance buffer any amount.
async fn read_body(
    incoming: spin_sdk::http::IncomingRequest,
    declared_length: Option<u64>,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt as _;
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut chunks = incoming.into_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|_| ApiError::MalformedBody("the request body could not be read".into()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Sends `response` as given: every header (spin-sdk's own conversion of an
/// `http` response folds repeated headers into one, which would lose one of
/// the two `Set-Cookie` headers), and `content-length` wherever the answer
/// has a body.
fn send_response(out: spin_sdk::http::ResponseOutparam, response: Response, head: bool) {
    let (parts, body) = response.into_parts();
    let headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect();
    let status = parts.status;
    let has_body = !head
        && !status.is_informational()
        && status != http::StatusCode::NO_CONTENT
        && status != http::StatusCode::NOT_MODIFIED;
    // Only a client that went away can make this fail, and it cannot be told.
    let _ = latch_send::respond(out.into_inner(), status.as_u16(), &headers, &body, has_body);
}

/// Runs a route: checks the method, gives the handler a [`Ctx`], turns its
/// error into a problem response, and adds the headers every answer carries.
pub async fn serve(
    ctx: &Ctx,
    req: Request,
    methods: &'static [Method],
    handler: impl AsyncFnOnce(&Ctx, Request) -> Result<Response, ApiError>,
) -> Response {
    // HEAD is answered wherever GET is.
    let allowed = methods.contains(req.method())
        || (req.method() == Method::HEAD && methods.contains(&Method::GET));
    let mut response = if !allowed {
        ApiError::MethodNotAllowed(methods).into_response(ctx)
    } else {
        let head = req.method() == Method::HEAD;
        let mut response = match handler(ctx, req).await {
            Ok(response) => response,
            Err(error) => {
                // Nothing is sent for a request that failed.
                ctx.discard_letters();
                error.into_response(ctx)
            }
        };
        if head {
            response.body_mut().clear();
        }
        response
    };
    response::finish(&mut response, ctx);
    response
}

/// Collects validation errors so a response can report every bad field at once.
#[derive(Debug, Default)]
pub struct Fields(Vec<latch_domain::FieldError>);

impl Fields {
    /// Keeps the value, or records the field's error.
    pub fn check<T>(&mut self, result: Result<T, latch_domain::FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(error);
                None
            }
        }
    }

    /// 400 with every recorded error, if any.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}
