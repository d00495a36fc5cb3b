//! Python bindings of edgeinfer (module `edgeinfer._edgeinfer`, re-exported by the `edgeinfer`
//! package): a decoder [`PyModel`] (generate/chat iterators, score, tokenize, embed) and the
//! LSTM classifier [`PyLstm`]. Every computation runs with the GIL released; every library
//! error becomes an `edgeinfer.Error` subclass.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use edgeinfer_lstm::{LstmClassifier, LstmError};
use edgeinfer_transformer::{
    chat, log_prob, CancelToken, Engine, EngineError, Generator, Logits, Model, Sampler,
    SamplerConfig, Session, StopReason, TransformerError,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyString;

create_exception!(
    edgeinfer,
    Error,
    PyException,
    "Base class of every edgeinfer error."
);
create_exception!(
    edgeinfer,
    LoadError,
    Error,
    "A model file could not be loaded."
);
create_exception!(
    edgeinfer,
    ContextFullError,
    Error,
    "The input does not fit in the model's context."
);
create_exception!(
    edgeinfer,
    InvalidInputError,
    Error,
    "An argument the library rejects (empty input, unknown token id, bad sampling option)."
);

fn transformer_err(e: TransformerError) -> PyErr {
    let msg = e.to_string();
    match e {
        TransformerError::ContextFull { .. } => ContextFullError::new_err(msg),
        TransformerError::BadPosition { .. }
        | TransformerError::BadToken { .. }
        | TransformerError::EmptyInput
        | TransformerError::Tokenize { .. }
        | TransformerError::Template { .. } => InvalidInputError::new_err(msg),
        _ => Error::new_err(msg),
    }
}

fn lstm_err(e: LstmError) -> PyErr {
    let msg = e.to_string();
    match e {
        LstmError::TokenOutOfRange { .. } | LstmError::Tokenizer { .. } => {
            InvalidInputError::new_err(msg)
        }
        _ => Error::new_err(msg),
    }
}

fn engine_err(e: EngineError) -> PyErr {
    InvalidInputError::new_err(e.to_string())
}

fn invalid(msg: impl Into<String>) -> PyErr {
    InvalidInputError::new_err(msg.into())
}

fn build_engine(threads: Option<usize>) -> PyResult<Engine> {
    let mut b = Engine::builder();
    if let Some(n) = threads {
        b = b.threads(n);
    }
    b.build().map_err(engine_err)
}

/// Lock a mutex; a poisoned one (a panic elsewhere, which the library does not do on input) is
/// still usable: the state it guards is replaced wholesale, never left half-written.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts the sessions alive on one model: incremented when made, decremented when dropped.
struct SessionGuard(Arc<AtomicUsize>);

impl SessionGuard {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        SessionGuard(Arc::clone(count))
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A decoder model (GGUF: llama, qwen2, gemma3) with its own engine (thread pool).
#[pyclass(name = "Model", module = "edgeinfer", frozen)]
struct PyModel {
    model: Arc<Model>,
    engine: Engine,
    context: usize,
    sessions: Arc<AtomicUsize>,
}

impl PyModel {
    fn session(&self) -> (Session, SessionGuard) {
        (
            Session::new(&self.engine, Arc::clone(&self.model), self.context),
            SessionGuard::new(&self.sessions),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        py: Python<'_>,
        prompt: Vec<u32>,
        max_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: Option<u64>,
        stop: Option<Vec<String>>,
    ) -> PyResult<TextIterator> {
        if !temperature.is_finite() {
            return Err(invalid(format!("temperature {temperature} is not finite")));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(invalid(format!("top_p {top_p} must be in (0, 1]")));
        }
        if !(0.0..=1.0).contains(&min_p) {
            return Err(invalid(format!("min_p {min_p} must be in [0, 1]")));
        }
        if !(repeat_penalty.is_finite() && repeat_penalty > 0.0) {
            return Err(invalid(format!(
                "repeat_penalty {repeat_penalty} must be a positive number"
            )));
        }
        let defaults = SamplerConfig::default();
        let cfg = SamplerConfig {
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            seed: seed.unwrap_or(defaults.seed),
            ..defaults
        };
        let (session, guard) = self.session();
        let generator = py
            .allow_threads(|| Generator::new(session, Sampler::new(cfg), &prompt, max_tokens))
            .map_err(transformer_err)?
            .with_stop_strings(stop.unwrap_or_default());
        let cancel = generator.cancel_token();
        Ok(TextIterator {
            state: Mutex::new(State {
                live: Some((generator, guard)),
                tokens: Vec::new(),
                stop: None,
            }),
            cancel,
            prompt_tokens: prompt.len(),
        })
    }
}

fn chat_messages(messages: Vec<HashMap<String, String>>) -> PyResult<Vec<chat::Message>> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| match (m.get("role"), m.get("content")) {
            (Some(role), Some(content)) => Ok(chat::Message::new(role, content)),
            _ => Err(invalid(format!(
                "message {i} needs the keys \"role\" and \"content\""
            ))),
        })
        .collect()
}

#[pymethods]
impl PyModel {
    /// Load a GGUF model; `threads` defaults to every core, `context` is each session's size.
    #[new]
    #[pyo3(signature = (path, threads=None, context=2048))]
    fn new(
        py: Python<'_>,
        path: std::path::PathBuf,
        threads: Option<usize>,
        context: usize,
    ) -> PyResult<Self> {
        if context == 0 {
            return Err(invalid("context must be at least 1"));
        }
        let engine = build_engine(threads)?;
        let model = py
            .allow_threads(|| Model::load(&path))
            .map_err(|e| LoadError::new_err(e.to_string()))?;
        Ok(PyModel {
            model: Arc::new(model),
            engine,
            context,
            sessions: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Sessions (KV caches) alive on this model: open iterators and calls running now.
    #[getter]
    fn active_sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    #[getter]
    fn context(&self) -> usize {
        self.context
    }

    #[getter]
    fn threads(&self) -> usize {
        self.engine.threads()
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.model.tokenizer.vocab_size()
    }

    #[getter]
    fn architecture(&self) -> String {
        self.model.config.arch.clone()
    }

    /// Generate after `prompt`: an iterator of text pieces (the prompt runs on the first step).
    #[pyo3(signature = (prompt, max_tokens=128, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
        repeat_penalty=1.0, seed=None, stop=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        prompt: &str,
        max_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: Option<u64>,
        stop: Option<Vec<String>>,
    ) -> PyResult<TextIterator> {
        let ids = py
            .allow_threads(|| self.model.tokenizer.encode(prompt, true))
            .map_err(transformer_err)?;
        self.start(
            py,
            ids,
            max_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            seed,
            stop,
        )
    }

    /// Reply to a conversation (`[{"role": ..., "content": ...}, ...]`) rendered with the
    /// model's chat template: an iterator of text pieces.
    #[pyo3(signature = (messages, max_tokens=128, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
        repeat_penalty=1.0, seed=None, stop=None))]
    #[allow(clippy::too_many_arguments)]
    fn chat(
        &self,
        py: Python<'_>,
        messages: Vec<HashMap<String, String>>,
        max_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: Option<u64>,
        stop: Option<Vec<String>>,
    ) -> PyResult<TextIterator> {
        let messages = chat_messages(messages)?;
        let ids = py
            .allow_threads(|| {
                let tk = &self.model.tokenizer;
                let template = chat::template_for(&self.model);
                let text = chat::render_for(template, tk, &messages, true)?;
                tk.encode(&text, true)
            })
            .map_err(transformer_err)?;
        self.start(
            py,
            ids,
            max_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            seed,
            stop,
        )
    }

    /// The log-probabilities of `text`'s tokens (BOS first, when the model adds one), each
    /// given the ones before: their sum, or the list when `per_token` is true.
    #[pyo3(signature = (text, per_token=false))]
    fn score(&self, py: Python<'_>, text: &str, per_token: bool) -> PyResult<PyObject> {
        let lps = py.allow_threads(|| -> PyResult<Vec<f64>> {
            let ids = self
                .model
                .tokenizer
                .encode(text, true)
                .map_err(transformer_err)?;
            if ids.len() < 2 {
                return Err(invalid(format!(
                    "{} token(s): nothing to score (need 2 or more, BOS included)",
                    ids.len()
                )));
            }
            let (mut session, _guard) = self.session();
            let logits = session
                .forward_logits(&ids[..ids.len() - 1], 0, Logits::All)
                .map_err(transformer_err)?;
            let vocab = self.model.config.vocab_size;
            Ok(logits
                .chunks_exact(vocab)
                .zip(&ids[1..])
                .map(|(row, &next)| log_prob(row, next as usize))
                .collect())
        })?;
        Ok(if per_token {
            lps.into_pyobject(py)?.into_any().unbind()
        } else {
            lps.iter()
                .sum::<f64>()
                .into_pyobject(py)?
                .into_any()
                .unbind()
        })
    }

    /// Token ids of `text` (BOS added when the model asks for it and `add_special` is true;
    /// special-token texts are parsed as such).
    #[pyo3(signature = (text, add_special=true))]
    fn tokenize(&self, py: Python<'_>, text: &str, add_special: bool) -> PyResult<Vec<u32>> {
        py.allow_threads(|| self.model.tokenizer.encode(text, add_special))
            .map_err(transformer_err)
    }

    /// The text of token ids (control tokens included when `special` is true).
    #[pyo3(signature = (ids, special=false))]
    fn detokenize(&self, ids: Vec<u32>, special: bool) -> PyResult<String> {
        let tk = &self.model.tokenizer;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= tk.vocab_size()) {
            return Err(invalid(format!(
                "token id {bad} is outside the vocabulary of {}",
                tk.vocab_size()
            )));
        }
        Ok(tk.decode(&ids, special))
    }

    /// A unit-length embedding (mean of the final hidden states) of a text, or one per text of
    /// a list.
    fn embed(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let (texts, single) = if let Ok(s) = text.downcast::<PyString>() {
            (vec![s.to_cow()?.into_owned()], true)
        } else if let Ok(list) = text.extract::<Vec<String>>() {
            (list, false)
        } else {
            return Err(PyTypeError::new_err("embed() takes a str or a list of str"));
        };
        let mut out = py.allow_threads(|| -> PyResult<Vec<Vec<f32>>> {
            let (mut session, _guard) = self.session();
            texts
                .iter()
                .map(|t| {
                    let ids = self
                        .model
                        .tokenizer
                        .encode(t, true)
                        .map_err(transformer_err)?;
                    session.embed(&ids).map_err(transformer_err)
                })
                .collect()
        })?;
        Ok(if single {
            out.remove(0).into_pyobject(py)?.into_any().unbind()
        } else {
            out.into_pyobject(py)?.into_any().unbind()
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "edgeinfer.Model(architecture={:?}, context={}, threads={})",
            self.model.config.arch,
            self.context,
            self.engine.threads()
        )
    }
}

/// What an iterator holds: the generation while it runs (with its session's counter guard),
/// then only what it produced.
struct State {
    live: Option<(Generator<Session>, SessionGuard)>,
    tokens: Vec<u32>,
    stop: Option<String>,
}

impl State {
    /// End the generation: keep its tokens and stop reason, free its session.
    fn finish(&mut self) {
        if let Some((generator, guard)) = self.live.take() {
            self.tokens = generator.generated().to_vec();
            self.stop = generator.stop_reason().map(|r| {
                match r {
                    StopReason::EndOfGeneration => "end_of_generation",
                    StopReason::StopString(_) => "stop_string",
                    StopReason::MaxTokens => "max_tokens",
                    StopReason::ContextFull => "context_full",
                    StopReason::Cancelled => "cancelled",
                    _ => "other",
                }
                .to_owned()
            });
            drop(generator);
            drop(guard);
        }
    }
}

/// An iterator of generated text pieces. It owns a session until it ends, is closed, or is
/// dropped; each step runs with the GIL released.
#[pyclass(name = "TextIterator", module = "edgeinfer", frozen)]
struct TextIterator {
    state: Mutex<State>,
    cancel: CancelToken,
    prompt_tokens: usize,
}

#[pymethods]
impl TextIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        py.allow_threads(|| {
            let mut st = lock(&self.state);
            loop {
                let Some((generator, _)) = st.live.as_mut() else {
                    return Ok(None);
                };
                match generator.next() {
                    None => {
                        st.finish();
                        return Ok(None);
                    }
                    Some(Err(e)) => {
                        st.finish();
                        return Err(transformer_err(e));
                    }
                    // Pieces with no text yet (held back for a stop string or an incomplete
                    // UTF-8 character) are not handed to Python.
                    Some(Ok(piece)) if piece.text.is_empty() => {}
                    Some(Ok(piece)) => return Ok(Some(piece.text)),
                }
            }
        })
    }

    /// End the generation now and free its session (idempotent).
    fn close(&self, py: Python<'_>) {
        self.cancel.cancel();
        py.allow_threads(|| lock(&self.state).finish());
    }

    /// Ask the generation to stop at its next token (callable from any thread, even while
    /// another thread is inside `__next__`).
    fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Token ids generated so far (an end-of-generation token included).
    #[getter]
    fn tokens(&self, py: Python<'_>) -> Vec<u32> {
        py.allow_threads(|| {
            let st = lock(&self.state);
            match &st.live {
                Some((g, _)) => g.generated().to_vec(),
                None => st.tokens.clone(),
            }
        })
    }

    /// Tokens of the prompt (after the chat template, BOS included).
    #[getter]
    fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// Why the generation ended (`"end_of_generation"`, `"stop_string"`, `"max_tokens"`,
    /// `"context_full"`, `"cancelled"`), or None while it runs.
    #[getter]
    fn stop_reason(&self, py: Python<'_>) -> Option<String> {
        py.allow_threads(|| lock(&self.state).stop.clone())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close(py);
    }
}

/// The LSTM text classifier (a GGUF `lstm-classifier` file) with its own engine.
#[pyclass(name = "LstmClassifier", module = "edgeinfer", frozen)]
struct PyLstm {
    clf: LstmClassifier,
    engine: Engine,
}

#[pymethods]
impl PyLstm {
    #[new]
    #[pyo3(signature = (path, threads=None))]
    fn new(py: Python<'_>, path: std::path::PathBuf, threads: Option<usize>) -> PyResult<Self> {
        let engine = build_engine(threads)?;
        let clf = py
            .allow_threads(|| LstmClassifier::load(&path))
            .map_err(|e| LoadError::new_err(e.to_string()))?;
        Ok(PyLstm { clf, engine })
    }

    #[getter]
    fn labels(&self) -> Vec<String> {
        self.clf.labels.clone()
    }

    #[getter]
    fn threads(&self) -> usize {
        self.engine.threads()
    }

    /// `(label, probability)` of a text, or a list of them for a list of texts (classified
    /// as one batch, in parallel on the engine).
    fn classify(&self, py: Python<'_>, texts: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let (texts, single) = if let Ok(s) = texts.downcast::<PyString>() {
            (vec![s.to_cow()?.into_owned()], true)
        } else if let Ok(list) = texts.extract::<Vec<String>>() {
            (list, false)
        } else {
            return Err(PyTypeError::new_err(
                "classify() takes a str or a list of str",
            ));
        };
        let results = py.allow_threads(|| -> PyResult<Vec<(String, f32)>> {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let out = self
                .clf
                .classify_batch(&self.engine, &refs)
                .map_err(lstm_err)?;
            Ok(out
                .into_iter()
                .map(|c| {
                    let label = self.clf.labels.get(c.label).cloned().unwrap_or_default();
                    let p = c.probs.get(c.label).copied().unwrap_or(0.0);
                    (label, p)
                })
                .collect())
        })?;
        if single {
            match results.into_iter().next() {
                Some(r) => Ok(r.into_pyobject(py)?.into_any().unbind()),
                None => Err(Error::new_err("the classifier returned no result")),
            }
        } else {
            Ok(results.into_pyobject(py)?.into_any().unbind())
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "edgeinfer.LstmClassifier(labels={:?}, threads={})",
            self.clf.labels,
            self.engine.threads()
        )
    }
}

#[pymodule]
fn _edgeinfer(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("LoadError", py.get_type::<LoadError>())?;
    m.add("ContextFullError", py.get_type::<ContextFullError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add_class::<PyModel>()?;
    m.add_class::<TextIterator>()?;
    m.add_class::<PyLstm>()?;
    Ok(())
}
