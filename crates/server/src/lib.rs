//! `edgeinfer serve`: an OpenAI-compatible HTTP server over the decoder.
//!
//! * [`AppState`] — the options, the model once loaded ([`AppState::install`]: it may be
//!   installed after the server started listening; until then `/health` answers 503
//!   `{"status":"loading"}`), the job queue and the counters.
//! * [`router`] — `GET /health`, `GET /v1/models`, `POST /v1/completions`,
//!   `POST /v1/chat/completions` (both also as server-sent events with `"stream": true`),
//!   `POST /v1/embeddings` (mean-pooled final hidden states, unit length), `POST /v1/classify`
//!   (an LSTM classifier).
//! * [`scheduler`] — one thread owns one [`Session`] per slot on one shared model and steps
//!   every active generation together with [`Session::decode_many`].
//!
//! Errors are answered in OpenAI's shape, `{"error":{"message","type","param","code"}}`.

pub mod error;
pub mod openai;
pub mod scheduler;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use edgeinfer_lstm::LstmClassifier;
use edgeinfer_transformer::chat::{self, Message};
use edgeinfer_transformer::{Engine, Model, SamplerConfig, Session};
use futures_util::stream::{self, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use error::{ApiError, ServerError};
use openai::{ChatRequest, CompletionRequest, EmbeddingsRequest, Endpoint, InputRequest, Sampling};
use scheduler::{Counters, Event, Finish, Job, Scheduler, TokenLogprob};

/// Most alternatives per token that `logprobs` / `top_logprobs` may ask for.
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// Most stop strings per request.
pub const MAX_STOP_STRINGS: usize = 16;
/// Most texts per `/v1/classify` request.
pub const MAX_CLASSIFY_INPUTS: usize = 256;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Generations that run at once (sessions on the model).
    pub slots: usize,
    /// Context of each slot, in tokens (capped at the model's context length).
    pub ctx: usize,
    /// Requests that may wait for a slot; more are answered 503.
    pub queue: usize,
    /// When set, `/v1/*` requires `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// The name `/v1/models` lists and the responses carry.
    pub model_name: String,
    /// Largest request body in bytes (413 above).
    pub body_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            slots: 4,
            ctx: 2048,
            queue: 64,
            api_key: None,
            model_name: "edgeinfer".into(),
            body_limit: 2 << 20,
        }
    }
}

/// Counters of [`AppState::stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Slots (generations that can run at once).
    pub slots: usize,
    /// Slots running a generation.
    pub busy: usize,
    /// Requests waiting for a slot.
    pub queued: usize,
    /// Generations ended because their client went away, since the start.
    pub cancelled: usize,
}

struct Backend {
    model: Arc<Model>,
    engine: Engine,
    ctx: usize,
    jobs: std_mpsc::Sender<Job>,
    classifier: Option<Arc<LstmClassifier>>,
}

struct Inner {
    opts: Options,
    backend: OnceLock<Backend>,
    load_error: OnceLock<String>,
    counters: Arc<Counters>,
    next_id: AtomicU64,
    /// Lets one `/v1/embeddings` request compute at a time.
    embed_gate: tokio::sync::Semaphore,
}

/// The server's shared state: cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// A state with no model yet (`/health` answers 503 "loading").
    pub fn new(opts: Options) -> Result<Self, ServerError> {
        if opts.slots == 0 {
            return Err(ServerError::BadOption {
                what: "slots must be at least 1".into(),
            });
        }
        if opts.ctx < 2 {
            return Err(ServerError::BadOption {
                what: "the context must hold at least 2 tokens".into(),
            });
        }
        Ok(AppState(Arc::new(Inner {
            opts,
            backend: OnceLock::new(),
            load_error: OnceLock::new(),
            counters: Arc::new(Counters::default()),
            next_id: AtomicU64::new(1),
            embed_gate: tokio::sync::Semaphore::new(1),
        })))
    }

    /// Install the loaded model (and optionally a classifier): make the slots' sessions on
    /// `engine` and start the scheduler thread (it ends when the state is dropped).
    pub fn install(
        &self,
        engine: Engine,
        model: Arc<Model>,
        classifier: Option<LstmClassifier>,
    ) -> Result<(), ServerError> {
        if self.0.backend.get().is_some() {
            return Err(ServerError::AlreadyInstalled);
        }
        let ctx = self.0.opts.ctx.min(model.config.context_length.max(2));
        let sessions = (0..self.0.opts.slots)
            .map(|_| Session::new(&engine, model.clone(), ctx))
            .collect();
        let (tx, rx) = std_mpsc::channel();
        let scheduler = Scheduler::new(model.clone(), sessions, rx, self.0.counters.clone());
        std::thread::Builder::new()
            .name("edgeinfer-scheduler".into())
            .spawn(move || scheduler.run())?;
        let backend = Backend {
            model,
            engine,
            ctx,
            jobs: tx,
            classifier: classifier.map(Arc::new),
        };
        self.0
            .backend
            .set(backend)
            .map_err(|_| ServerError::AlreadyInstalled)
    }

    /// Record that loading failed: `/health` answers 500 with `message`.
    pub fn fail(&self, message: String) {
        let _ = self.0.load_error.set(message);
    }

    /// The slot and queue counters now.
    pub fn stats(&self) -> Stats {
        let c = &self.0.counters;
        Stats {
            slots: self.0.opts.slots,
            busy: c.busy.load(Ordering::SeqCst),
            queued: c.queued.load(Ordering::SeqCst),
            cancelled: c.cancelled.load(Ordering::SeqCst),
        }
    }

    /// The context of each slot (once installed).
    pub fn ctx(&self) -> Option<usize> {
        self.0.backend.get().map(|b| b.ctx)
    }

    fn backend(&self) -> Result<&Backend, ApiError> {
        self.0.backend.get().ok_or_else(|| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the model is still loading".into(),
            kind: "server_error",
            param: None,
            code: Some("model_loading"),
        })
    }

    fn next_id(&self, prefix: &str) -> String {
        let n = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:06}", unix_time())
    }

    /// Queue a job unless the queue is full.
    fn submit(&self, job: Job) -> Result<(), ApiError> {
        let backend = self.backend()?;
        let cap = self.0.opts.queue;
        let counters = &self.0.counters;
        if counters
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q < cap).then_some(q + 1)
            })
            .is_err()
        {
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "the server is busy: all {} slots are in use and {cap} requests are waiting; retry later",
                    self.0.opts.slots
                ),
                kind: "server_error",
                param: None,
                code: Some("queue_full"),
            });
        }
        if backend.jobs.send(job).is_err() {
            counters.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::internal("the scheduler has stopped"));
        }
        Ok(())
    }
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The server's routes over `state`.
pub fn router(state: AppState) -> Router {
    let limit = state.0.opts.body_limit;
    let v1 = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/classify", post(classify))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .merge(v1)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serve `router(state)` on `listener` until `shutdown` completes (in-flight requests are
/// finished first).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.0.opts.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: "missing or wrong API key: send Authorization: Bearer <key>".into(),
                kind: "invalid_request_error",
                param: None,
                code: Some("invalid_api_key"),
            }
            .into_response();
        }
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such endpoint".into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("not_found"),
    }
}

async fn health(State(state): State<AppState>) -> Response {
    if state.0.backend.get().is_none() {
        if let Some(e) = state.0.load_error.get() {
            let body = json!({"status": "error", "message": e});
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
        }
        let body = json!({"status": "loading"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let c = &state.0.counters;
    Json(json!({
        "status": "ok",
        "slots": state.0.opts.slots,
        "busy": c.busy.load(Ordering::SeqCst),
        "queued": c.queued.load(Ordering::SeqCst),
    }))
    .into_response()
}

async fn models(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.0.opts.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "edgeinfer",
        }],
    }))
}

/// The body as a `T`: 413 above the size limit, 400 for bytes that are not UTF-8 or JSON
/// that does not fit `T`.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|r| ApiError {
        status: r.status(),
        message: r.body_text(),
        kind: "invalid_request_error",
        param: None,
        code: None,
    })?;
    if std::str::from_utf8(&body).is_err() {
        return Err(ApiError::bad_request("the request body is not valid UTF-8"));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// What both generation endpoints ask of the scheduler, checked.
struct Plan {
    prompt: Vec<u32>,
    max_tokens: usize,
    sampler: SamplerConfig,
    stop: Vec<String>,
    logprobs: Option<usize>,
    ignore_eos: bool,
    stream: bool,
    include_usage: bool,
}

impl AppState {
    /// Check the sampling fields and the prompt's length; clamp `max_tokens` to the context
    /// left after the prompt.
    fn plan(
        &self,
        prompt: Vec<u32>,
        s: Sampling,
        max_tokens: Option<u64>,
        logprobs: Option<u32>,
        endpoint: Endpoint,
    ) -> Result<Plan, ApiError> {
        let ctx = self.backend()?.ctx;
        let prompt_param = match endpoint {
            Endpoint::Completions => "prompt",
            Endpoint::Chat => "messages",
        };
        if prompt.is_empty() {
            return Err(ApiError::bad_param(prompt_param, "the prompt is empty"));
        }
        if prompt.len() >= ctx {
            return Err(ApiError::bad_param(
                prompt_param,
                format!(
                    "the prompt has {} tokens; this server's context holds {ctx} (prompt and completion)",
                    prompt.len()
                ),
            )
            .with_code("context_length_exceeded"));
        }
        if s.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad_param("n", "only n = 1 is supported"));
        }
        let left = ctx - prompt.len();
        let max_tokens = match max_tokens {
            Some(0) => {
                return Err(ApiError::bad_param(
                    "max_tokens",
                    "max_tokens must be at least 1",
                ))
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(left),
            None => left,
        };
        let temperature = s.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad_param(
                "temperature",
                "temperature must be between 0 and 2",
            ));
        }
        let top_p = s.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad_param("top_p", "top_p must be in (0, 1]"));
        }
        let penalty = |v: Option<f32>, name: &'static str| match v.unwrap_or(0.0) {
            p if (-2.0..=2.0).contains(&p) => Ok(p),
            _ => Err(ApiError::bad_param(
                name,
                format!("{name} must be between -2 and 2"),
            )),
        };
        let frequency_penalty = penalty(s.frequency_penalty, "frequency_penalty")?;
        let presence_penalty = penalty(s.presence_penalty, "presence_penalty")?;
        let stop = s.stop.map(|s| s.into_vec()).unwrap_or_default();
        if stop.len() > MAX_STOP_STRINGS {
            return Err(ApiError::bad_param(
                "stop",
                format!("at most {MAX_STOP_STRINGS} stop strings"),
            ));
        }
        if let Some(k) = logprobs {
            if k > MAX_TOP_LOGPROBS {
                return Err(ApiError::bad_param(
                    "top_logprobs",
                    format!("at most {MAX_TOP_LOGPROBS} alternatives per token"),
                ));
            }
        }
        let seed = match s.seed {
            Some(seed) => seed as u64,
            None => {
                let t = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                t ^ self
                    .0
                    .next_id
                    .fetch_add(1, Ordering::Relaxed)
                    .rotate_left(32)
            }
        };
        let sampler = SamplerConfig {
            temperature,
            top_k: 0,
            top_p,
            min_p: 0.0,
            repeat_penalty: 1.0,
            frequency_penalty,
            presence_penalty,
            penalty_last_n: 64,
            seed,
        };
        Ok(Plan {
            prompt,
            max_tokens,
            sampler,
            stop,
            logprobs: logprobs.map(|k| k as usize),
            ignore_eos: s.ignore_eos.unwrap_or(false),
            stream: s.stream.unwrap_or(false),
            include_usage: s
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        })
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>, ApiError> {
        let model = &self.backend()?.model;
        model
            .tokenizer
            .encode(text, true)
            .map_err(|e| ApiError::bad_param("prompt", e.to_string()))
    }
}

async fn completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse(body)?;
    let prompts = req
        .prompt
        .ok_or_else(|| ApiError::bad_param("prompt", "missing field `prompt`"))?
        .into_vec();
    let [prompt] = <[String; 1]>::try_from(prompts)
        .map_err(|_| ApiError::bad_param("prompt", "give exactly one prompt"))?;
    let ids = state.tokenize(&prompt)?;
    let max_tokens = req.sampling.max_tokens;
    let plan = state.plan(
        ids,
        req.sampling,
        max_tokens,
        req.logprobs,
        Endpoint::Completions,
    )?;
    run(state, Endpoint::Completions, plan, req.model).await
}

async fn chat_completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatRequest = parse(body)?;
    if req.messages.is_empty() {
        return Err(ApiError::bad_param("messages", "`messages` is empty"));
    }
    let messages: Vec<Message> = req
        .messages
        .iter()
        .map(|m| {
            let content = match &m.content {
                None => String::new(),
                Some(openai::Content::Text(t)) => t.clone(),
                Some(openai::Content::Parts(parts)) => parts
                    .iter()
                    .filter(|p| p.kind == "text")
                    .filter_map(|p| p.text.as_deref())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            Message::new(&m.role, &content)
        })
        .collect();
    let model = state.backend()?.model.clone();
    let text = chat::render_for(
        chat::template_for(&model),
        &model.tokenizer,
        &messages,
        true,
    )
    .map_err(|e| ApiError::bad_param("messages", e.to_string()))?;
    let ids = state.tokenize(&text)?;
    let logprobs = match (req.logprobs, req.top_logprobs) {
        (Some(true), k) => Some(k.unwrap_or(0)),
        (_, Some(_)) => {
            return Err(ApiError::bad_param(
                "top_logprobs",
                "top_logprobs needs logprobs: true",
            ))
        }
        _ => None,
    };
    let max_tokens = req.max_completion_tokens.or(req.sampling.max_tokens);
    let plan = state.plan(ids, req.sampling, max_tokens, logprobs, Endpoint::Chat)?;
    run(state, Endpoint::Chat, plan, req.model).await
}

/// What every response of one generation carries.
struct Meta {
    id: String,
    created: u64,
    model: String,
    endpoint: Endpoint,
    include_usage: bool,
}

impl Meta {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Completions, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if chunk && self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// A streamed chunk: `text` (chat: as `delta.content`, with `role` when `first`), its
    /// logprobs (`offset`: where the text starts in the completion), a finish reason.
    fn chunk(
        &self,
        text: Option<&str>,
        logprob: Option<(&TokenLogprob, usize)>,
        finish: Option<Finish>,
        first: bool,
    ) -> Value {
        let finish = finish.map(openai::finish_reason);
        let choice = match self.endpoint {
            Endpoint::Completions => json!({
                "index": 0,
                "text": text.unwrap_or(""),
                "logprobs": logprob.map(|(l, o)| openai::completion_logprobs(&[(l.clone(), o)])),
                "finish_reason": finish,
            }),
            Endpoint::Chat => {
                let mut delta = json!({});
                if first {
                    delta["role"] = json!("assistant");
                }
                if let Some(t) = text {
                    delta["content"] = json!(t);
                }
                json!({
                    "index": 0,
                    "delta": delta,
                    "logprobs": logprob.map(|(l, _)| openai::chat_logprobs(std::slice::from_ref(l))),
                    "finish_reason": finish,
                })
            }
        };
        self.envelope(true, json!([choice]))
    }
}

async fn run(
    state: AppState,
    endpoint: Endpoint,
    plan: Plan,
    _requested_model: Option<String>, // one model is served: any name is accepted
) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::unbounded_channel();
    state.submit(Job {
        prompt: plan.prompt,
        max_tokens: plan.max_tokens,
        sampler: plan.sampler,
        stop: plan.stop,
        logprobs: plan.logprobs,
        ignore_eos: plan.ignore_eos,
        events: tx,
    })?;
    let meta = Meta {
        id: state.next_id(match endpoint {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        }),
        created: unix_time(),
        model: state.0.opts.model_name.clone(),
        endpoint,
        include_usage: plan.include_usage,
    };
    if plan.stream {
        Ok(Sse::new(sse_events(meta, rx)).into_response())
    } else {
        collect(meta, rx).await
    }
}

/// The whole answer of a non-streamed generation.
async fn collect(meta: Meta, mut rx: mpsc::UnboundedReceiver<Event>) -> Result<Response, ApiError> {
    let mut text = String::new();
    let mut lps: Vec<(TokenLogprob, usize)> = Vec::new();
    let mut chars = 0;
    loop {
        match rx.recv().await {
            Some(Event::Text { text: t, logprob }) => {
                if let Some(lp) = logprob {
                    lps.push((lp, chars));
                }
                chars += t.chars().count();
                text.push_str(&t);
            }
            Some(Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
            }) => {
                let logprobs = match (meta.endpoint, lps.is_empty()) {
                    (_, true) => Value::Null,
                    (Endpoint::Completions, false) => openai::completion_logprobs(&lps),
                    (Endpoint::Chat, false) => {
                        let l: Vec<TokenLogprob> = lps.into_iter().map(|(l, _)| l).collect();
                        openai::chat_logprobs(&l)
                    }
                };
                let finish = openai::finish_reason(finish);
                let choice = match meta.endpoint {
                    Endpoint::Completions => json!({
                        "index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish,
                    }),
                    Endpoint::Chat => json!({
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": logprobs,
                        "finish_reason": finish,
                    }),
                };
                let mut body = meta.envelope(false, json!([choice]));
                body["usage"] = openai::usage(prompt_tokens, completion_tokens);
                return Ok(Json(body).into_response());
            }
            Some(Event::Error(e)) => return Err(ApiError::internal(e)),
            None => return Err(ApiError::internal("the generation ended without a result")),
        }
    }
}

struct SseState {
    meta: Meta,
    rx: mpsc::UnboundedReceiver<Event>,
    first: bool,
    done: bool,
    chars: usize,
}

fn data(v: &Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

/// A streamed generation as server-sent events: a chunk per piece of text, the finish
/// reason, the usage when asked, `[DONE]`. Dropping the stream (the client went away)
/// closes the channel, which the scheduler notices at its next step.
fn sse_events(
    meta: Meta,
    rx: mpsc::UnboundedReceiver<Event>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let st = SseState {
        meta,
        rx,
        first: true,
        done: false,
        chars: 0,
    };
    stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let mut out = Vec::new();
        let first = std::mem::replace(&mut st.first, false);
        match st.rx.recv().await {
            Some(Event::Text { text, logprob }) => {
                let lp = logprob.as_ref().map(|l| (l, st.chars));
                out.push(data(&st.meta.chunk(Some(&text), lp, None, first)));
                st.chars += text.chars().count();
            }
            Some(Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
            }) => {
                let text = (st.meta.endpoint == Endpoint::Chat && first).then_some("");
                out.push(data(&st.meta.chunk(text, None, Some(finish), first)));
                if st.meta.include_usage {
                    let mut v = st.meta.envelope(true, json!([]));
                    v["usage"] = openai::usage(prompt_tokens, completion_tokens);
                    out.push(data(&v));
                }
                out.push(SseEvent::default().data("[DONE]"));
                st.done = true;
            }
            Some(Event::Error(e)) => {
                out.push(data(&ApiError::internal(e).body()));
                out.push(SseEvent::default().data("[DONE]"));
                st.done = true;
            }
            None => {
                let e = ApiError::internal("the generation ended without a result");
                out.push(data(&e.body()));
                out.push(SseEvent::default().data("[DONE]"));
                st.done = true;
            }
        }
        Some((stream::iter(out.into_iter().map(Ok)), st))
    })
    .flatten()
}

/// Most texts in one `/v1/embeddings` request.
pub const MAX_EMBEDDING_INPUTS: usize = 256;

async fn embeddings(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let backend = state.backend()?;
    let req: EmbeddingsRequest = parse(body)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_param(
                "encoding_format",
                format!("encoding_format {other:?}: use \"float\" or \"base64\""),
            ))
        }
    };
    let inputs = req.input.into_vec();
    if inputs.is_empty() || inputs.len() > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::bad_param(
            "input",
            format!("give 1 to {MAX_EMBEDDING_INPUTS} texts"),
        ));
    }
    let ctx = backend.ctx;
    let mut ids = Vec::with_capacity(inputs.len());
    for (i, text) in inputs.iter().enumerate() {
        let t = backend
            .model
            .tokenizer
            .encode(text, true)
            .map_err(|e| ApiError::bad_param("input", e.to_string()))?;
        if t.is_empty() || t.len() > ctx {
            return Err(ApiError::bad_param(
                "input",
                format!(
                    "input {i} has {} tokens; give 1 to {ctx} (this server's context)",
                    t.len()
                ),
            )
            .with_code("context_length_exceeded"));
        }
        ids.push(t);
    }
    let tokens: usize = ids.iter().map(Vec::len).sum();
    let (engine, model) = (backend.engine.clone(), backend.model.clone());
    // One embedding request at a time beside the slots (each runs whole forward passes).
    let _permit = state
        .0
        .embed_gate
        .acquire()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let vectors = tokio::task::spawn_blocking(move || {
        let mut session = Session::new(&engine, model, ctx);
        ids.iter()
            .map(|t| session.embed(t))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(BASE64_STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": state.0.opts.model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

async fn classify(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let backend = state.backend()?;
    let Some(clf) = backend.classifier.clone() else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: "no classifier loaded: start the server with --classifier FILE.gguf".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("no_classifier"),
        });
    };
    let req: InputRequest = parse(body)?;
    let inputs = req.input.into_vec();
    if inputs.is_empty() || inputs.len() > MAX_CLASSIFY_INPUTS {
        return Err(ApiError::bad_param(
            "input",
            format!("give 1 to {MAX_CLASSIFY_INPUTS} texts"),
        ));
    }
    let engine = backend.engine.clone();
    let labels = clf.labels.clone();
    let results = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        clf.classify_batch(&engine, &refs)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::bad_param("input", e.to_string()))?;
    let data: Vec<Value> = results
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = |k: usize| labels.get(k).cloned().unwrap_or_else(|| k.to_string());
            json!({
                "index": i,
                "label": name(c.label),
                "label_index": c.label,
                "probabilities": c.probs,
                "tokens": c.n_tokens,
            })
        })
        .collect();
    Ok(Json(
        json!({"object": "list", "labels": labels, "data": data}),
    ))
}
