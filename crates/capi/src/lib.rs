//! The C API of edgeinfer: `include/edgeinfer.h` (generated from this file by cbindgen, see
//! `crates/capi/cbindgen.toml`), `libedgeinfer.a` / `libedgeinfer.so`.
//!
//! Every entry point returns an [`EiError`] code as an `int` (0 is success), catches panics
//! (they become [`EiError::EI_ERR_PANIC`]) and leaves a message for [`ei_last_error`] on
//! failure. Handles are opaque; `ei_*_free` accepts NULL.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};

use edgeinfer_gguf::GgufError;
use edgeinfer_lstm::{LstmClassifier, LstmError};
use edgeinfer_transformer::{
    log_prob, CancelToken, Engine, EngineError, Generator, Level, Logits, Model, Sampler,
    SamplerConfig, Session, StopReason, TransformerError,
};

/// Return codes of every `ei_*` function that can fail (returned as `int`).
/// On any code other than `EI_OK`, `ei_last_error()` describes what went wrong.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EiError {
    /// Success.
    EI_OK = 0,
    /// A required pointer (handle, string, output) was NULL.
    EI_ERR_NULL_ARG = 1,
    /// A string argument was not valid UTF-8.
    EI_ERR_INVALID_UTF8 = 2,
    /// An argument was out of range (unknown kernel level, token id outside the vocabulary,
    /// label index, empty input, ...).
    EI_ERR_INVALID_ARG = 3,
    /// A file could not be read (missing, no permission, ...).
    EI_ERR_IO = 4,
    /// The file is not a model this library can run (bad GGUF, unsupported architecture,
    /// tensor type or tokenizer).
    EI_ERR_MODEL = 5,
    /// The output buffer is too small; the size needed was written to the size output.
    EI_ERR_BUFFER_TOO_SMALL = 6,
    /// The prompt does not fit in what is left of the session's context.
    EI_ERR_CONTEXT_FULL = 7,
    /// The generation was cancelled with `ei_session_cancel`.
    EI_ERR_CANCELLED = 8,
    /// The session is in use by another call (a generation running on another thread, or a
    /// call made from inside a generation's callback).
    EI_ERR_BUSY = 9,
    /// An internal error (a bug): a panic caught at the boundary.
    EI_ERR_PANIC = 10,
}

/// An error on its way out: a code and the message `ei_last_error` will return.
#[derive(Debug)]
struct Error {
    code: EiError,
    msg: String,
}

impl Error {
    fn new(code: EiError, msg: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
        }
    }
    fn null(what: &str) -> Self {
        Error::new(EiError::EI_ERR_NULL_ARG, format!("{what} is NULL"))
    }
    fn invalid(msg: impl Into<String>) -> Self {
        Error::new(EiError::EI_ERR_INVALID_ARG, msg)
    }
}

fn gguf_code(e: &GgufError) -> EiError {
    match e {
        GgufError::Io { .. } => EiError::EI_ERR_IO,
        GgufError::InFile { error, .. } => gguf_code(error),
        _ => EiError::EI_ERR_MODEL,
    }
}

impl From<TransformerError> for Error {
    fn from(e: TransformerError) -> Self {
        let code = match &e {
            TransformerError::Gguf(g) => gguf_code(g),
            TransformerError::ContextFull { .. } => EiError::EI_ERR_CONTEXT_FULL,
            TransformerError::BadPosition { .. }
            | TransformerError::BadToken { .. }
            | TransformerError::EmptyInput => EiError::EI_ERR_INVALID_ARG,
            _ => EiError::EI_ERR_MODEL,
        };
        Error::new(code, e.to_string())
    }
}

impl From<LstmError> for Error {
    fn from(e: LstmError) -> Self {
        let code = match &e {
            LstmError::Gguf(g) => gguf_code(g),
            LstmError::TokenOutOfRange { .. } => EiError::EI_ERR_INVALID_ARG,
            _ => EiError::EI_ERR_MODEL,
        };
        Error::new(code, e.to_string())
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        Error::invalid(e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\u{fffd}")).unwrap_or_default();
    // Fails only while the thread is being torn down: then there is nobody to tell.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

/// The message of a caught panic's payload.
fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Run an entry point's body: catch a panic, turn the result into a code and leave the
/// message of a failure for [`ei_last_error`] (or clear it on success).
fn guard(body: impl FnOnce() -> Result<(), Error>) -> c_int {
    let err = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            return EiError::EI_OK as c_int;
        }
        Ok(Err(e)) => e,
        Err(p) => Error::new(
            EiError::EI_ERR_PANIC,
            format!("internal error (panic): {}", panic_message(&*p)),
        ),
    };
    set_last_error(&err.msg);
    err.code as c_int
}

/// Run an entry point that cannot report errors (a getter): a panic gives `default`.
fn quiet<T>(default: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(default)
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for `'a`.
unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: not NULL, and the caller guarantees a NUL-terminated string living for 'a.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Error::new(
            EiError::EI_ERR_INVALID_UTF8,
            format!("{what} is not valid UTF-8: {e}"),
        )
    })
}

/// A handle argument.
///
/// # Safety
/// `p` is NULL or a live handle of type `T` (made by this library, not freed) for `'a`.
unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, Error> {
    // SAFETY: the caller guarantees `p` is NULL or points to a live `T`; `as_ref` checks NULL.
    unsafe { p.as_ref() }.ok_or_else(|| Error::null(what))
}

/// Check that an output pointer is not NULL (before doing any work).
fn out_arg<T>(p: *mut T, what: &str) -> Result<(), Error> {
    if p.is_null() {
        Err(Error::null(what))
    } else {
        Ok(())
    }
}

/// Store `v` through an output pointer (NULL is skipped: optional outputs).
///
/// # Safety
/// `p` is NULL or valid for writing a `T`.
unsafe fn put<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: not NULL, and the caller guarantees it is valid for writes of a `T`.
        unsafe { p.write(v) };
    }
}

/// A slice argument: `n` elements at `p` (`p` may be NULL when `n` is 0).
///
/// # Safety
/// When `n > 0`, `p` points to `n` initialized `T`s valid for `'a`.
unsafe fn slice_arg<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T], Error> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::null(what));
    }
    // SAFETY: not NULL, and the caller guarantees `n` initialized elements valid for 'a.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// The library's version, e.g. `"0.1.0"` (a static string: never freed).
#[no_mangle]
pub extern "C" fn ei_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last failed `ei_*` call on this thread, or `""` when the last call
/// succeeded. Never NULL. The string belongs to the library and stays valid until the next
/// `ei_*` call on this thread (copy it to keep it).
#[no_mangle]
pub extern "C" fn ei_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

// ---------------------------------------------------------------------------------------------
// Models

/// A loaded decoder model (GGUF: llama, qwen2, gemma3) and the engine (thread pool, kernel
/// level) its sessions run on. Opaque. Thread-safe: any number of sessions, tokenize and score
/// calls may use one model from any threads at once.
pub struct EiModel {
    model: Arc<Model>,
    engine: Engine,
}

/// Settings of `ei_model_load`. Get the defaults with `ei_model_params_default()` and change
/// the fields you need.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EiModelParams {
    /// Threads of the model's pool, shared by all its sessions (0: all cores).
    pub n_threads: u32,
    /// Kernel level by name (`"scalar"`, `"avx2"`, `"avxvnni"`, `"neon"`, `"dotprod"`,
    /// `"i8mm"`), or NULL / `""` for the best this CPU has. A level the CPU lacks is
    /// `EI_ERR_INVALID_ARG`. Only read during `ei_model_load`.
    pub kernels: *const c_char,
    /// Run single-token decode steps as one team of the pool's threads (true, the default)
    /// rather than fork-join per product. Same results either way.
    pub decode_team: bool,
}

/// The default `EiModelParams`: all cores, the best kernels, the decode team on.
#[no_mangle]
pub extern "C" fn ei_model_params_default() -> EiModelParams {
    EiModelParams {
        n_threads: 0,
        kernels: std::ptr::null(),
        decode_team: true,
    }
}

/// Build an engine from the thread count, the level name (None: best) and the team setting.
fn build_engine(threads: u32, kernels: Option<&str>, team: bool) -> Result<Engine, Error> {
    let mut b = Engine::builder().decode_team(team);
    if threads > 0 {
        b = b.threads(threads as usize);
    }
    if let Some(name) = kernels.filter(|n| !n.trim().is_empty()) {
        let level = Level::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Level::ALL.iter().map(|l| l.name()).collect();
            Error::invalid(format!(
                "unknown kernel level {name:?} (known: {})",
                names.join(", ")
            ))
        })?;
        b = b.level(level);
    }
    Ok(b.build()?)
}

/// Load a GGUF decoder model from `path` (UTF-8) into `*out`.
///
/// Errors: `EI_ERR_NULL_ARG` (path or out NULL), `EI_ERR_INVALID_UTF8`, `EI_ERR_IO` (file
/// missing or unreadable), `EI_ERR_MODEL` (not a model this library runs),
/// `EI_ERR_INVALID_ARG` (kernel level unknown or unavailable). On failure `*out` is set to
/// NULL. Free the model with `ei_model_free` once its sessions are freed.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or writable; `params.kernels` is
/// NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ei_model_load(
    path: *const c_char,
    params: EiModelParams,
    out: *mut *mut EiModel,
) -> c_int {
    guard(|| {
        out_arg(out, "out")?;
        // SAFETY: `out` is not NULL and the caller guarantees it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller guarantees `path` is NULL or a NUL-terminated string.
        let path = unsafe { str_arg(path, "path") }?;
        let kernels = if params.kernels.is_null() {
            None
        } else {
            // SAFETY: not NULL; the caller guarantees a NUL-terminated string.
            Some(unsafe { str_arg(params.kernels, "params.kernels") }?)
        };
        let engine = build_engine(params.n_threads, kernels, params.decode_team)?;
        let model = Arc::new(Model::load(path)?);
        let handle = Box::into_raw(Box::new(EiModel { model, engine }));
        // SAFETY: checked above: not NULL, writable.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Free a model (NULL: nothing happens). Sessions made from it stay usable: each keeps a
/// share of the weights and the engine, released with the last of them.
///
/// # Safety
/// `model` is NULL or a handle from `ei_model_load` not freed yet and not in use.
#[no_mangle]
pub unsafe extern "C" fn ei_model_free(model: *mut EiModel) {
    if model.is_null() {
        return;
    }
    // SAFETY: the caller guarantees a live handle from `Box::into_raw` in `ei_model_load`,
    // used by nobody else: ownership comes back here once.
    let b = unsafe { Box::from_raw(model) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
}

/// The context length the model was trained with (0 if `model` is NULL).
///
/// # Safety
/// `model` is NULL or a live model handle.
#[no_mangle]
pub unsafe extern "C" fn ei_model_context_length(model: *const EiModel) -> u32 {
    quiet(0, || {
        // SAFETY: the caller guarantees NULL or a live handle.
        match unsafe { handle(model, "model") } {
            Ok(m) => u32::try_from(m.model.config.context_length).unwrap_or(u32::MAX),
            Err(_) => 0,
        }
    })
}

/// Tokenize `text` (UTF-8) with the model's tokenizer into `ids[0..cap]`; `*n_out` receives
/// the number of ids. With `add_special`, the tokens the model wants around a text are added
/// (BOS before, for most models) — what `ei_generate` does for the first prompt of a session.
///
/// If `cap` is less than the number of ids, nothing is written to `ids`, `*n_out` is the
/// number needed and the result is `EI_ERR_BUFFER_TOO_SMALL` (`ids` may be NULL when `cap`
/// is 0, to ask for the size).
///
/// # Safety
/// `model` is NULL or a live model; `text` is NULL or NUL-terminated; `ids` is NULL or
/// writable for `cap` ids; `n_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ei_tokenize(
    model: *const EiModel,
    text: *const c_char,
    add_special: bool,
    ids: *mut u32,
    cap: usize,
    n_out: *mut usize,
) -> c_int {
    guard(|| {
        out_arg(n_out, "n_out")?;
        // SAFETY: the caller guarantees NULL or a live handle.
        let m = unsafe { handle(model, "model") }?;
        // SAFETY: the caller guarantees NULL or a NUL-terminated string.
        let text = unsafe { str_arg(text, "text") }?;
        let toks = m.model.tokenizer.encode(text, add_special)?;
        // SAFETY: not NULL (checked), writable by the caller's guarantee.
        unsafe { put(n_out, toks.len()) };
        if toks.len() > cap {
            return Err(Error::new(
                EiError::EI_ERR_BUFFER_TOO_SMALL,
                format!(
                    "{} token ids need a buffer of {}, got {cap}",
                    toks.len(),
                    toks.len()
                ),
            ));
        }
        if !toks.is_empty() {
            out_arg(ids, "ids")?;
            // SAFETY: `ids` is not NULL and the caller guarantees room for `cap` ≥ toks.len()
            // ids; a fresh Vec cannot overlap the caller's buffer.
            unsafe { std::ptr::copy_nonoverlapping(toks.as_ptr(), ids, toks.len()) };
        }
        Ok(())
    })
}

/// Write `s` and a NUL into `buf[0..cap]`, or fail with the length needed.
///
/// # Safety
/// `buf` is NULL or writable for `cap` bytes.
unsafe fn write_str(s: &str, buf: *mut c_char, cap: usize) -> Result<(), Error> {
    if s.len() + 1 > cap {
        return Err(Error::new(
            EiError::EI_ERR_BUFFER_TOO_SMALL,
            format!(
                "{} bytes of text need a buffer of {} (with the NUL), got {cap}",
                s.len(),
                s.len() + 1
            ),
        ));
    }
    out_arg(buf, "buf")?;
    // SAFETY: `buf` is not NULL and writable for `cap` ≥ s.len() + 1 bytes (the caller's
    // guarantee); `s` is our own string, so they do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        buf.add(s.len()).write(0);
    }
    Ok(())
}

/// Turn `n` token ids into text (UTF-8, NUL-terminated) in `buf[0..cap]`. Control tokens
/// (BOS, EOS, chat markers) are left out. `*len_out` receives the text's length in bytes,
/// not counting the NUL, so the buffer needs `*len_out + 1` bytes: if `cap` is smaller the
/// result is `EI_ERR_BUFFER_TOO_SMALL` with `*len_out` set (`buf` may be NULL when `cap` is 0).
/// An id outside the vocabulary is `EI_ERR_INVALID_ARG`.
///
/// # Safety
/// `model` is NULL or a live model; `ids` is NULL or points to `n` ids; `buf` is NULL or
/// writable for `cap` bytes; `len_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ei_detokenize(
    model: *const EiModel,
    ids: *const u32,
    n: usize,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> c_int {
    guard(|| {
        out_arg(len_out, "len_out")?;
        // SAFETY: the caller guarantees NULL or a live handle.
        let m = unsafe { handle(model, "model") }?;
        // SAFETY: the caller guarantees `n` readable ids at `ids` (or n == 0).
        let ids = unsafe { slice_arg(ids, n, "ids") }?;
        let vocab = m.model.tokenizer.vocab_size();
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(Error::invalid(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let text = m.model.tokenizer.decode(ids, false);
        // SAFETY: not NULL (checked), writable by the caller's guarantee.
        unsafe { put(len_out, text.len()) };
        // SAFETY: the caller guarantees `buf` is NULL or writable for `cap` bytes.
        unsafe { write_str(&text, buf, cap) }
    })
}

/// Score `text` under the model: `*logprob_out` receives the sum of the natural-log
/// probabilities of the text's tokens, each given those before it, and `*n_tokens_out` how
/// many tokens were scored. The text is tokenized as a first prompt (BOS added when the model
/// wants one, so every text token is scored); without BOS the first token has no context
/// and is not scored. Runs in a temporary session on the model's engine.
/// Errors: `EI_ERR_INVALID_ARG` if there is nothing to score, `EI_ERR_CONTEXT_FULL` if the
/// text is longer than the model's context.
///
/// # Safety
/// `model` is NULL or a live model; `text` is NULL or NUL-terminated; the outputs are NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn ei_score(
    model: *const EiModel,
    text: *const c_char,
    logprob_out: *mut f64,
    n_tokens_out: *mut usize,
) -> c_int {
    guard(|| {
        out_arg(logprob_out, "logprob_out")?;
        out_arg(n_tokens_out, "n_tokens_out")?;
        // SAFETY: the caller guarantees NULL or a live handle.
        let m = unsafe { handle(model, "model") }?;
        // SAFETY: the caller guarantees NULL or a NUL-terminated string.
        let text = unsafe { str_arg(text, "text") }?;
        let ids = m.model.tokenizer.encode(text, true)?;
        if ids.len() < 2 {
            return Err(Error::invalid(format!(
                "{} token(s): nothing to score (need 2 or more, BOS included)",
                ids.len()
            )));
        }
        let mut session = Session::new(&m.engine, Arc::clone(&m.model), ids.len());
        let logits = session.forward_logits(&ids[..ids.len() - 1], 0, Logits::All)?;
        let vocab = m.model.config.vocab_size;
        let sum: f64 = logits
            .chunks_exact(vocab)
            .zip(&ids[1..])
            .map(|(row, &next)| log_prob(row, next as usize))
            .sum();
        // SAFETY: both checked not NULL; writable by the caller's guarantee.
        unsafe {
            put(logprob_out, sum);
            put(n_tokens_out, ids.len() - 1);
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Sessions and generation

/// One conversation's KV cache on a model. Opaque. A session is used by one call at a time
/// (another call while a generation runs gets `EI_ERR_BUSY`), except `ei_session_cancel`,
/// which any thread may call at any time. Different sessions may generate on different
/// threads at once.
pub struct EiSession {
    state: Mutex<SessionState>,
    /// The token the current (or next) generation stops on.
    cancel: Mutex<CancelToken>,
}

struct SessionState {
    session: Session,
    /// The last generated token when the generation ended before running it: it goes first
    /// into the next generation, so the cache continues the text exactly.
    pending: Option<u32>,
}

impl EiSession {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, SessionState>, Error> {
        match self.state.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::WouldBlock) => Err(Error::new(
                EiError::EI_ERR_BUSY,
                "the session is in use by another call",
            )),
            Err(TryLockError::Poisoned(_)) => Err(Error::new(
                EiError::EI_ERR_PANIC,
                "the session was left inconsistent by an internal error; free it",
            )),
        }
    }
    fn cancel_token(&self) -> std::sync::MutexGuard<'_, CancelToken> {
        self.cancel.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Settings of `ei_session_new`; defaults from `ei_session_params_default()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EiSessionParams {
    /// Positions the session holds: prompts plus generated tokens (at most the model's context
    /// length; 0: the model's context length). Default 2048.
    pub n_ctx: u32,
}

/// The default `EiSessionParams` (a 2048-position context).
#[no_mangle]
pub extern "C" fn ei_session_params_default() -> EiSessionParams {
    EiSessionParams { n_ctx: 2048 }
}

/// A new, empty session of `model` into `*out` (NULL on failure). The session shares the
/// model's weights and engine and keeps them alive: it may outlive `ei_model_free`.
///
/// # Safety
/// `model` is NULL or a live model; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ei_session_new(
    model: *const EiModel,
    params: EiSessionParams,
    out: *mut *mut EiSession,
) -> c_int {
    guard(|| {
        out_arg(out, "out")?;
        // SAFETY: `out` is not NULL and the caller guarantees it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller guarantees NULL or a live handle.
        let m = unsafe { handle(model, "model") }?;
        let n_ctx = match params.n_ctx {
            0 => m.model.config.context_length,
            n => n as usize,
        };
        let session = Session::new(&m.engine, Arc::clone(&m.model), n_ctx);
        let s = Box::new(EiSession {
            state: Mutex::new(SessionState {
                session,
                pending: None,
            }),
            cancel: Mutex::new(CancelToken::new()),
        });
        // SAFETY: checked above: not NULL, writable.
        unsafe { out.write(Box::into_raw(s)) };
        Ok(())
    })
}

/// Free a session (NULL: nothing happens). No call may be using it.
///
/// # Safety
/// `session` is NULL or a handle from `ei_session_new` not freed yet and not in use.
#[no_mangle]
pub unsafe extern "C" fn ei_session_free(session: *mut EiSession) {
    if session.is_null() {
        return;
    }
    // SAFETY: the caller guarantees a live handle from `Box::into_raw` in `ei_session_new`
    // that nothing else uses: ownership comes back here once.
    let b = unsafe { Box::from_raw(session) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
}

/// Empty the session's cache (the next prompt starts a new text) and withdraw a pending
/// cancel. `EI_ERR_BUSY` while a generation runs on it.
///
/// # Safety
/// `session` is NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn ei_session_reset(session: *const EiSession) -> c_int {
    guard(|| {
        // SAFETY: the caller guarantees NULL or a live handle.
        let s = unsafe { handle(session, "session") }?;
        let mut st = s.lock()?;
        st.session.truncate(0);
        st.pending = None;
        *s.cancel_token() = CancelToken::new();
        Ok(())
    })
}

/// Positions in the session's cache (0 if `session` is NULL or busy).
///
/// # Safety
/// `session` is NULL or a live session.
#[no_mangle]
pub unsafe extern "C" fn ei_session_n_past(session: *const EiSession) -> u32 {
    quiet(0, || {
        // SAFETY: the caller guarantees NULL or a live handle.
        let Ok(s) = (unsafe { handle(session, "session") }) else {
            return 0;
        };
        s.lock()
            .map(|st| u32::try_from(st.session.n_past()).unwrap_or(u32::MAX))
            .unwrap_or(0)
    })
}

/// Stop the generation running on `session`, from any thread (a UI's stop button, a
/// watchdog): it ends at its next token boundary and `ei_generate` returns
/// `EI_ERR_CANCELLED`. If no generation is running, the next one on this session is cancelled
/// as it starts (so a cancel cannot be lost in a race with the start); `ei_session_reset`
/// withdraws it. Returns `EI_OK`, or `EI_ERR_NULL_ARG`.
///
/// # Safety
/// `session` is NULL or a live session (it must not be freed during this call).
#[no_mangle]
pub unsafe extern "C" fn ei_session_cancel(session: *const EiSession) -> c_int {
    guard(|| {
        // SAFETY: the caller guarantees NULL or a live handle.
        let s = unsafe { handle(session, "session") }?;
        s.cancel_token().cancel();
        Ok(())
    })
}

/// Settings of `ei_generate`; defaults from `ei_generate_params_default()` (llama.cpp's
/// sampling defaults). A temperature ≤ 0 is greedy decoding.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EiGenerateParams {
    /// Most tokens to generate (default 128).
    pub max_tokens: u32,
    /// ≤ 0: greedy (default 0.8).
    pub temperature: f32,
    /// Keep the k most probable tokens (0: off; default 40).
    pub top_k: u32,
    /// Nucleus sampling (1.0: off; default 0.95).
    pub top_p: f32,
    /// Keep tokens with p ≥ min_p · p_max (0: off; default 0.05).
    pub min_p: f32,
    /// Penalty of tokens seen in the last `penalty_last_n` (1.0: off, the default).
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at (default 64).
    pub penalty_last_n: u32,
    /// Random seed: the same seed, prompt and settings give the same text.
    pub seed: u64,
}

/// The default `EiGenerateParams`.
#[no_mangle]
pub extern "C" fn ei_generate_params_default() -> EiGenerateParams {
    let d = SamplerConfig::default();
    EiGenerateParams {
        max_tokens: 128,
        temperature: d.temperature,
        top_k: u32::try_from(d.top_k).unwrap_or(u32::MAX),
        top_p: d.top_p,
        min_p: d.min_p,
        repeat_penalty: d.repeat_penalty,
        penalty_last_n: u32::try_from(d.penalty_last_n).unwrap_or(u32::MAX),
        seed: d.seed,
    }
}

impl EiGenerateParams {
    fn sampler(&self) -> Result<SamplerConfig, Error> {
        let finite = [
            self.temperature,
            self.top_p,
            self.min_p,
            self.repeat_penalty,
        ];
        if finite.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("sampling parameters must be finite numbers"));
        }
        if self.top_p <= 0.0 || self.top_p > 1.0 || !(0.0..=1.0).contains(&self.min_p) {
            return Err(Error::invalid(format!(
                "top_p {} must be in (0, 1] and min_p {} in [0, 1]",
                self.top_p, self.min_p
            )));
        }
        if self.repeat_penalty <= 0.0 {
            return Err(Error::invalid("repeat_penalty must be positive"));
        }
        Ok(SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k as usize,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            penalty_last_n: self.penalty_last_n as usize,
            seed: self.seed,
            ..SamplerConfig::default()
        })
    }
}

/// Receives each piece of generated text: `piece` is NUL-terminated UTF-8 holding only
/// complete characters (never empty), valid only during the call. Return 0 to go on,
/// nonzero to stop the generation (then `ei_generate` returns `EI_OK`).
/// The callback must not unwind (no C++ exceptions, no Rust panics) through the library.
pub type EiPieceCallback =
    Option<unsafe extern "C" fn(piece: *const c_char, user_data: *mut c_void) -> c_int>;

/// Append `prompt` (UTF-8) to the session and generate a continuation, streaming it to
/// `callback(piece, user_data)` (NULL: no streaming). `*n_generated_out` (may be NULL)
/// receives the number of tokens generated, also on failure.
///
/// The first prompt of a session gets the model's BOS; later prompts continue the text in
/// the cache (the session keeps everything, generated tokens included). An empty prompt
/// continues the generation where the last one stopped.
///
/// Generation ends at an end-of-generation token, after `max_tokens`, when the context is
/// full (these are `EI_OK`), when the callback returns nonzero (`EI_OK`), or when
/// `ei_session_cancel` is called (`EI_ERR_CANCELLED`; what was generated stays in the cache).
/// Other errors: `EI_ERR_NULL_ARG`, `EI_ERR_INVALID_UTF8`, `EI_ERR_INVALID_ARG` (bad
/// sampling parameters, nothing to run), `EI_ERR_CONTEXT_FULL` (the prompt does not fit),
/// `EI_ERR_BUSY` (the session is in use).
///
/// # Safety
/// `session` is NULL or a live session; `prompt` is NULL or NUL-terminated; `callback` is
/// NULL or a function safe to call with `user_data`; `n_generated_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ei_generate(
    session: *const EiSession,
    prompt: *const c_char,
    params: EiGenerateParams,
    callback: EiPieceCallback,
    user_data: *mut c_void,
    n_generated_out: *mut u32,
) -> c_int {
    // SAFETY: the caller guarantees `n_generated_out` is NULL or writable.
    unsafe { put(n_generated_out, 0) };
    guard(|| {
        // SAFETY: the caller guarantees NULL or a live handle.
        let s = unsafe { handle(session, "session") }?;
        // SAFETY: the caller guarantees NULL or a NUL-terminated string.
        let prompt = unsafe { str_arg(prompt, "prompt") }?;
        let sampler = params.sampler()?;
        let mut guard_st = s.lock()?;
        let st = &mut *guard_st;
        let model = Arc::clone(st.session.model());
        let mut ids: Vec<u32> = st.pending.into_iter().collect();
        let first = ids.is_empty() && st.session.n_past() == 0;
        ids.extend(model.tokenizer.encode(prompt, first)?);
        if ids.is_empty() && st.session.n_past() > 0 {
            // Continue from the cache: run its last token again for fresh logits.
            let cached = st.session.tokens().to_vec();
            st.session.truncate(cached.len() - 1);
            ids = cached[st.session.n_past()..].to_vec();
        }
        let start = st.session.n_past();
        let token = s.cancel_token().clone();
        let mut generator = Generator::new(&mut st.session, Sampler::new(sampler), &ids, {
            params.max_tokens as usize
        })?
        .with_cancel(token.clone());
        st.pending = None;
        let mut failure = None;
        for piece in generator.by_ref() {
            let piece = match piece {
                Ok(p) => p,
                Err(e) => {
                    failure = Some(Error::from(e));
                    break;
                }
            };
            let Some(cb) = callback else { continue };
            if piece.text.is_empty() {
                continue;
            }
            let text = CString::new(piece.text.replace('\0', "\u{fffd}")).unwrap_or_default();
            // SAFETY: the caller guarantees `cb` may be called with `user_data`; `text` is a
            // NUL-terminated string that lives until after the call.
            let stop = unsafe { cb(text.as_ptr(), user_data) };
            if stop != 0 {
                break;
            }
        }
        let generated = generator.generated().to_vec();
        let reason = generator.stop_reason().cloned();
        drop(generator);
        // The last generated token is not in the cache when the generation ended before
        // running it: keep it for the next generation.
        if let Some(&last) = generated.last() {
            if st.session.n_past() + 1 == start + ids.len() + generated.len() {
                st.pending = Some(last);
            }
        }
        // SAFETY: the caller guarantees `n_generated_out` is NULL or writable.
        unsafe { put(n_generated_out, generated.len() as u32) };
        {
            // A cancel is used up by the generation it reached.
            let mut t = s.cancel_token();
            if t.is_cancelled() {
                *t = CancelToken::new();
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if reason == Some(StopReason::Cancelled) {
            return Err(Error::new(
                EiError::EI_ERR_CANCELLED,
                format!(
                    "generation cancelled after {} token(s) (ei_session_cancel)",
                    generated.len()
                ),
            ));
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// LSTM classifier

/// An LSTM text classifier (GGUF with its tokenizer and labels) and the engine it runs on.
/// Opaque. Thread-safe: classify from any threads at once.
pub struct EiClassifier {
    classifier: LstmClassifier,
    engine: Engine,
    labels: Vec<CString>,
}

/// Load an LSTM classifier from `path` (UTF-8) into `*out` (NULL on failure), computing on
/// its own pool of `n_threads` threads (0: all cores) with the best kernels.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ei_classifier_load(
    path: *const c_char,
    n_threads: u32,
    out: *mut *mut EiClassifier,
) -> c_int {
    guard(|| {
        out_arg(out, "out")?;
        // SAFETY: `out` is not NULL and the caller guarantees it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller guarantees NULL or a NUL-terminated string.
        let path = unsafe { str_arg(path, "path") }?;
        let engine = build_engine(n_threads, None, true)?;
        let classifier = LstmClassifier::load(path)?;
        if classifier.tokenizer().is_none() {
            return Err(Error::new(
                EiError::EI_ERR_MODEL,
                format!("{path}: the classifier has no tokenizer, it cannot read text"),
            ));
        }
        let labels = classifier
            .labels
            .iter()
            .map(|l| CString::new(l.replace('\0', "\u{fffd}")).unwrap_or_default())
            .collect();
        let c = Box::new(EiClassifier {
            classifier,
            engine,
            labels,
        });
        // SAFETY: checked above: not NULL, writable.
        unsafe { out.write(Box::into_raw(c)) };
        Ok(())
    })
}

/// Free a classifier (NULL: nothing happens).
///
/// # Safety
/// `classifier` is NULL or a handle from `ei_classifier_load` not freed yet and not in use.
#[no_mangle]
pub unsafe extern "C" fn ei_classifier_free(classifier: *mut EiClassifier) {
    if classifier.is_null() {
        return;
    }
    // SAFETY: the caller guarantees a live handle from `Box::into_raw` in
    // `ei_classifier_load` that nothing else uses: ownership comes back here once.
    let b = unsafe { Box::from_raw(classifier) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
}

/// Number of classes (0 if `classifier` is NULL).
///
/// # Safety
/// `classifier` is NULL or a live classifier.
#[no_mangle]
pub unsafe extern "C" fn ei_classifier_n_labels(classifier: *const EiClassifier) -> u32 {
    quiet(0, || {
        // SAFETY: the caller guarantees NULL or a live handle.
        match unsafe { handle(classifier, "classifier") } {
            Ok(c) => c.labels.len() as u32,
            Err(_) => 0,
        }
    })
}

/// The name of class `index` (NUL-terminated UTF-8, owned by the classifier: valid until it is
/// freed), or NULL if `classifier` is NULL or `index` out of range (`ei_last_error` says which).
///
/// # Safety
/// `classifier` is NULL or a live classifier.
#[no_mangle]
pub unsafe extern "C" fn ei_classifier_label(
    classifier: *const EiClassifier,
    index: u32,
) -> *const c_char {
    let mut label = std::ptr::null();
    guard(|| {
        // SAFETY: the caller guarantees NULL or a live handle.
        let c = unsafe { handle(classifier, "classifier") }?;
        let l = c.labels.get(index as usize).ok_or_else(|| {
            Error::invalid(format!(
                "label index {index} out of range: {} labels",
                c.labels.len()
            ))
        })?;
        label = l.as_ptr();
        Ok(())
    });
    label
}

/// Classify `text` (UTF-8): `*label_out` receives the index of the most probable class
/// (its name: `ei_classifier_label`) and `*prob_out` (may be NULL) its probability.
///
/// # Safety
/// `classifier` is NULL or a live classifier; `text` is NULL or NUL-terminated; the outputs
/// are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ei_classify(
    classifier: *const EiClassifier,
    text: *const c_char,
    label_out: *mut u32,
    prob_out: *mut f32,
) -> c_int {
    guard(|| {
        out_arg(label_out, "label_out")?;
        // SAFETY: the caller guarantees NULL or a live handle.
        let c = unsafe { handle(classifier, "classifier") }?;
        // SAFETY: the caller guarantees NULL or a NUL-terminated string.
        let text = unsafe { str_arg(text, "text") }?;
        let r = c.classifier.classify(&c.engine, text)?;
        // SAFETY: `label_out` checked not NULL; both writable (or NULL) by the caller's
        // guarantee.
        unsafe {
            put(label_out, r.label as u32);
            put(prob_out, r.probs[r.label]);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: ei_last_error returns a NUL-terminated string valid until the next call.
        unsafe { CStr::from_ptr(ei_last_error()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn guard_turns_a_panic_into_a_code_and_a_message() {
        let code = guard(|| panic!("boom {}", 42));
        assert_eq!(code, EiError::EI_ERR_PANIC as c_int);
        assert!(last_error().contains("boom 42"), "{}", last_error());
        // the next successful call clears it
        assert_eq!(guard(|| Ok(())), 0);
        assert_eq!(last_error(), "");
        let code = guard(|| Err(Error::invalid("bad thing")));
        assert_eq!(code, EiError::EI_ERR_INVALID_ARG as c_int);
        assert_eq!(last_error(), "bad thing");
    }

    #[test]
    fn last_error_is_per_thread() {
        guard(|| Err(Error::invalid("main thread's")));
        std::thread::spawn(|| {
            assert_eq!(last_error(), "");
            guard(|| Err(Error::invalid("other thread's")));
            assert_eq!(last_error(), "other thread's");
        })
        .join()
        .unwrap();
        assert_eq!(last_error(), "main thread's");
    }

    #[test]
    fn version_is_the_crate_version() {
        // SAFETY: a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(ei_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn bad_sampling_parameters_are_rejected() {
        let mut p = ei_generate_params_default();
        assert!(p.sampler().is_ok());
        p.top_p = 0.0;
        assert_eq!(p.sampler().unwrap_err().code, EiError::EI_ERR_INVALID_ARG);
        p = ei_generate_params_default();
        p.temperature = f32::NAN;
        assert_eq!(p.sampler().unwrap_err().code, EiError::EI_ERR_INVALID_ARG);
    }
}
