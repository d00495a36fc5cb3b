//! The request bodies of the OpenAI API that the server reads, and the JSON it answers.
//! Fields the server does not use are ignored; a field of the wrong type fails the parse
//! (400).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::scheduler::{Finish, TokenLogprob};

/// A string or an array of strings (`stop`, `input`, `prompt`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The sampling and length fields common to both generation endpoints.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stop: Option<OneOrMany>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub n: Option<u32>,
    /// Not OpenAI's (llama.cpp's server has it): never end at an end-of-generation token, so
    /// a request generates exactly `max_tokens` (for load tests).
    #[serde(default)]
    pub ignore_eos: Option<bool>,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt: Option<OneOrMany>,
    /// How many alternatives per token to report (0: only the chosen token's).
    #[serde(default)]
    pub logprobs: Option<u32>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// A chat message's content: a string or an array of parts (the text parts are joined).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingsRequest {
    pub input: OneOrMany,
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32 bytes, what the `openai` Python
    /// client asks for).
    #[serde(default)]
    pub encoding_format: Option<String>,
}

/// `POST /v1/classify`.
#[derive(Debug, Clone, Deserialize)]
pub struct InputRequest {
    pub input: OneOrMany,
}

/// Which endpoint a generation answers: the shapes of its JSON differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// `usage`.
pub fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// `finish_reason`.
pub fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

fn bytes_json(b: &[u8]) -> Value {
    Value::Array(b.iter().map(|&x| Value::from(x)).collect())
}

/// Chat's `logprobs.content[]` entries.
pub fn chat_logprobs(lps: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = lps
        .iter()
        .map(|lp| {
            let top: Vec<Value> = lp
                .top
                .iter()
                .map(|t| json!({"token": t.token, "logprob": t.logprob, "bytes": bytes_json(&t.bytes)}))
                .collect();
            json!({
                "token": lp.chosen.token,
                "logprob": lp.chosen.logprob,
                "bytes": bytes_json(&lp.chosen.bytes),
                "top_logprobs": top,
            })
        })
        .collect();
    json!({ "content": content })
}

/// Completions' `logprobs`: `tokens`, `token_logprobs`, `top_logprobs`, `text_offset`
/// (character offsets into the completion's text, starting at `offset`).
pub fn completion_logprobs(lps: &[(TokenLogprob, usize)]) -> Value {
    let tokens: Vec<&str> = lps.iter().map(|(l, _)| l.chosen.token.as_str()).collect();
    let token_logprobs: Vec<f32> = lps.iter().map(|(l, _)| l.chosen.logprob).collect();
    let top: Vec<Value> = lps
        .iter()
        .map(|(l, _)| {
            let mut m = Map::new();
            for t in &l.top {
                m.entry(t.token.clone()).or_insert(Value::from(t.logprob));
            }
            Value::Object(m)
        })
        .collect();
    let offsets: Vec<usize> = lps.iter().map(|(_, o)| *o).collect();
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top,
        "text_offset": offsets,
    })
}
