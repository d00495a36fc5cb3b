//! Helpers of the server tests: the real default model (fetched if absent, never skipped),
//! a server on an ephemeral port in this process, and a small HTTP/1.0 client (the body of
//! each answer ends when the server closes the connection, so streamed answers need no
//! chunked decoding).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use edgeinfer_lstm::LstmClassifier;
use edgeinfer_server::{AppState, Options};
use edgeinfer_transformer::{Engine, Level, Model};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default model (SmolLM2-135M-Instruct Q4_1) in `$EDGEINFER_MODELS` (default
/// `models/`), fetched by `scripts/fetch-models.sh` when absent; loaded once.
pub fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| {
        let dir = std::env::var_os("EDGEINFER_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("models"));
        let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
        if !path.exists() {
            let status = Command::new("bash")
                .arg(root().join("scripts/fetch-models.sh"))
                .arg("smollm2")
                .env("EDGEINFER_MODELS", &dir)
                .status()
                .expect("running scripts/fetch-models.sh");
            assert!(
                status.success(),
                "fetching the default model failed: {status}"
            );
        }
        Arc::new(Model::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    })
    .clone()
}

/// Two threads at the best kernel level (capped by `EDGEINFER_KERNELS`).
pub fn engine() -> Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        Engine::builder()
            .threads(2)
            .level(Level::best_up_to_named(
                std::env::var("EDGEINFER_KERNELS").ok().as_deref(),
            ))
            .build()
            .expect("engine")
    })
    .clone()
}

pub fn classifier() -> LstmClassifier {
    let p = root().join("fixtures/lstm/sms.q8_0.gguf");
    LstmClassifier::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub state: AppState,
}

/// A server over `opts` on 127.0.0.1 (an ephemeral port), model installed unless `install`
/// is false.
pub async fn start_with(opts: Options, install: bool, clf: Option<LstmClassifier>) -> TestServer {
    let state = AppState::new(opts).expect("options");
    if install {
        state.install(engine(), model(), clf).expect("install");
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let st = state.clone();
    tokio::spawn(async move {
        edgeinfer_server::serve(listener, st, std::future::pending())
            .await
            .expect("serve")
    });
    TestServer { addr, state }
}

pub async fn start(opts: Options) -> TestServer {
    start_with(opts, true, None).await
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: body {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The `data:` payloads of a server-sent-events body.
    pub fn sse(&self) -> Vec<String> {
        self.text()
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                e.strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                    .to_string()
            })
            .collect()
    }
}

fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Send one request and read the whole answer.
pub async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&request_bytes(method, path, headers, body))
        .await
        .expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(300), s.read_to_end(&mut raw))
        .await
        .expect("answer within 300 s")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    Resp {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

pub async fn post(addr: std::net::SocketAddr, path: &str, body: &Value) -> Resp {
    request(addr, "POST", path, &[], body.to_string().as_bytes()).await
}

pub async fn get(addr: std::net::SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"").await
}

/// Start a streamed request and read until `events` data events arrived; return the open
/// connection (drop it to disconnect) and what was read.
pub async fn stream_partially(
    addr: std::net::SocketAddr,
    path: &str,
    body: &Value,
    events: usize,
) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&request_bytes(
        "POST",
        path,
        &[],
        body.to_string().as_bytes(),
    ))
    .await
    .expect("write");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(120);
    while String::from_utf8_lossy(&raw).matches("data: ").count() < events {
        assert!(Instant::now() < deadline, "no stream events");
        let n = tokio::time::timeout(Duration::from_secs(120), s.read(&mut buf))
            .await
            .expect("stream event in time")
            .expect("read");
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
    (s, String::from_utf8_lossy(&raw).into_owned())
}

/// `/health` as JSON.
pub async fn health(addr: std::net::SocketAddr) -> Value {
    get(addr, "/health").await.json()
}

/// Poll `/health` until `pred` holds (at most `secs` seconds).
pub async fn wait_health(
    addr: std::net::SocketAddr,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let h = health(addr).await;
        if pred(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "health never matched: last {h}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Assert that `r` is an OpenAI-style error with `status`.
pub fn assert_error(r: &Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    let obj = e.as_object().expect("error object");
    assert!(obj.contains_key("param") && obj.contains_key("code"), "{v}");
    v
}
