//! The C API called as C calls it (raw pointers, NUL-terminated strings, callbacks), checked
//! against the Rust API on the same model: SmolLM2-135M (fetched with
//! `scripts/fetch-models.sh` if absent) and the SMS LSTM classifier fixture.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::process::Command;
use std::ptr;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use edgeinfer::*;
use edgeinfer_lstm::LstmClassifier;
use edgeinfer_transformer::{
    log_prob, Engine, Generator, Logits, Model, Sampler, SamplerConfig, Session,
};

const PROMPT: &str = "The capital of France is";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// SmolLM2-135M-Instruct Q4_1 in `$EDGEINFER_MODELS` (default `models/`), fetched if absent.
fn model_path() -> PathBuf {
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
            "scripts/fetch-models.sh smollm2: {status}"
        );
    }
    path
}

fn classifier_path() -> PathBuf {
    root().join("fixtures/lstm/sms.q8_0.gguf")
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    // SAFETY: ei_last_error never returns NULL; the string is valid until the next call.
    unsafe { CStr::from_ptr(ei_last_error()) }
        .to_string_lossy()
        .into_owned()
}

const OK: c_int = EiError::EI_OK as c_int;

fn code(e: EiError) -> c_int {
    e as c_int
}

/// A model handle shared by the tests of this binary (2 threads, the best kernels).
struct ModelHandle(*mut EiModel);
// SAFETY: an EiModel is documented thread-safe (Arc<Model> + Engine, both Send + Sync).
unsafe impl Send for ModelHandle {}
// SAFETY: as above: every function taking a model takes it by shared reference.
unsafe impl Sync for ModelHandle {}

fn model() -> *const EiModel {
    static M: OnceLock<ModelHandle> = OnceLock::new();
    M.get_or_init(|| {
        let path = c(model_path().to_str().unwrap());
        let mut p = ei_model_params_default();
        p.n_threads = 2;
        let mut out = ptr::null_mut();
        // SAFETY: valid string, params and out pointer.
        let rc = unsafe { ei_model_load(path.as_ptr(), p, &mut out) };
        assert_eq!(rc, OK, "{}", last_error());
        assert!(!out.is_null());
        ModelHandle(out)
    })
    .0
}

/// The same model through the Rust API, and an engine like the handle's.
fn rust_model() -> &'static (Arc<Model>, Engine) {
    static M: OnceLock<(Arc<Model>, Engine)> = OnceLock::new();
    M.get_or_init(|| {
        let m = Arc::new(Model::load(model_path()).unwrap());
        (m, Engine::builder().threads(2).build().unwrap())
    })
}

/// Greedy continuation of `prompt` by the Rust `Generator`: (text, tokens generated).
fn rust_greedy(prompt: &str, max_tokens: usize) -> (String, usize) {
    let (m, e) = rust_model();
    let ids = m.tokenizer.encode(prompt, true).unwrap();
    let session = Session::new(e, m.clone(), 512);
    let mut g = Generator::new(
        session,
        Sampler::new(SamplerConfig::greedy()),
        &ids,
        max_tokens,
    )
    .unwrap();
    let mut text = String::new();
    for p in g.by_ref() {
        text.push_str(&p.unwrap().text);
    }
    (text, g.generated().len())
}

struct CSession(*mut EiSession);

impl CSession {
    fn new(n_ctx: u32) -> CSession {
        let mut out = ptr::null_mut();
        let mut p = ei_session_params_default();
        p.n_ctx = n_ctx;
        // SAFETY: live model, valid out pointer.
        let rc = unsafe { ei_session_new(model(), p, &mut out) };
        assert_eq!(rc, OK, "{}", last_error());
        CSession(out)
    }
}

impl Drop for CSession {
    fn drop(&mut self) {
        // SAFETY: a live session made by ei_session_new, not used any more.
        unsafe { ei_session_free(self.0) };
    }
}

/// What the callback collects; `stop_after`: return 1 after that many pieces.
#[derive(Default)]
struct Collect {
    text: String,
    pieces: usize,
    stop_after: Option<usize>,
    /// Signalled at the first piece; then the callback waits for `resume`.
    started: Option<mpsc::Sender<()>>,
    resume: Option<mpsc::Receiver<()>>,
    /// A session to call `ei_generate` / `ei_session_reset` on from inside the callback.
    reenter: Option<*const EiSession>,
    reenter_codes: Vec<(c_int, String)>,
}

unsafe extern "C" fn collect(piece: *const c_char, user_data: *mut c_void) -> c_int {
    // SAFETY: `user_data` is the `&mut Collect` the test passed, alive for the whole
    // ei_generate call, and only this callback touches it meanwhile.
    let c = unsafe { &mut *user_data.cast::<Collect>() };
    // SAFETY: ei_generate passes a NUL-terminated string valid during the call.
    let piece = unsafe { CStr::from_ptr(piece) };
    let piece = piece.to_str().expect("pieces are UTF-8");
    assert!(!piece.is_empty(), "empty pieces are not delivered");
    c.text.push_str(piece);
    c.pieces += 1;
    if let Some(tx) = c.started.take() {
        tx.send(()).unwrap();
        if let Some(rx) = c.resume.take() {
            rx.recv().unwrap();
        }
    }
    if let Some(s) = c.reenter.take() {
        let prompt = CString::new("x").unwrap();
        // SAFETY: a live session; the call must refuse (busy) rather than deadlock.
        let rc = unsafe {
            ei_generate(
                s,
                prompt.as_ptr(),
                ei_generate_params_default(),
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        c.reenter_codes.push((rc, last_error()));
        // SAFETY: as above.
        let rc = unsafe { ei_session_reset(s) };
        c.reenter_codes.push((rc, last_error()));
    }
    c_int::from(c.stop_after.is_some_and(|n| c.pieces >= n))
}

fn greedy(max_tokens: u32) -> EiGenerateParams {
    let mut p = ei_generate_params_default();
    p.temperature = 0.0;
    p.max_tokens = max_tokens;
    p
}

/// `ei_generate` with the collecting callback: (code, tokens generated).
fn generate(s: &CSession, prompt: &str, p: EiGenerateParams, col: &mut Collect) -> (c_int, u32) {
    let prompt = c(prompt);
    let mut n = u32::MAX;
    // SAFETY: live session, NUL-terminated prompt, a callback whose user_data is `col`,
    // alive during the call; `n` writable.
    let rc = unsafe {
        ei_generate(
            s.0,
            prompt.as_ptr(),
            p,
            Some(collect),
            (col as *mut Collect).cast(),
            &mut n,
        )
    };
    (rc, n)
}

#[test]
fn load_errors_are_codes_with_messages() {
    let mut out: *mut EiModel = std::ptr::NonNull::dangling().as_ptr();
    let p = ei_model_params_default();

    let missing = c("/nonexistent/dir/model.gguf");
    // SAFETY: valid pointers.
    let rc = unsafe { ei_model_load(missing.as_ptr(), p, &mut out) };
    assert_eq!(rc, code(EiError::EI_ERR_IO));
    assert!(out.is_null(), "out is NULL after a failure");
    assert!(
        last_error().contains("/nonexistent/dir/model.gguf"),
        "{}",
        last_error()
    );

    // SAFETY: a NULL path is allowed (an error).
    let rc = unsafe { ei_model_load(ptr::null(), p, &mut out) };
    assert_eq!(rc, code(EiError::EI_ERR_NULL_ARG));
    assert!(last_error().contains("path"), "{}", last_error());

    let bad = CString::new(b"models/\xff\xfe.gguf".to_vec()).unwrap();
    // SAFETY: NUL-terminated (not UTF-8: that is the point).
    let rc = unsafe { ei_model_load(bad.as_ptr(), p, &mut out) };
    assert_eq!(rc, code(EiError::EI_ERR_INVALID_UTF8));
    assert!(last_error().contains("UTF-8"), "{}", last_error());

    // SAFETY: NULL out is refused before anything is written.
    let rc = unsafe { ei_model_load(missing.as_ptr(), p, ptr::null_mut()) };
    assert_eq!(rc, code(EiError::EI_ERR_NULL_ARG));
    assert!(last_error().contains("out"), "{}", last_error());

    // A file that is not GGUF, and a GGUF that is not a decoder.
    let readme = c(root().join("README.md").to_str().unwrap());
    // SAFETY: valid pointers.
    let rc = unsafe { ei_model_load(readme.as_ptr(), p, &mut out) };
    assert_eq!(rc, code(EiError::EI_ERR_MODEL), "{}", last_error());
    assert!(last_error().contains("GGUF"), "{}", last_error());
    let lstm = c(classifier_path().to_str().unwrap());
    // SAFETY: valid pointers.
    let rc = unsafe { ei_model_load(lstm.as_ptr(), p, &mut out) };
    assert_eq!(rc, code(EiError::EI_ERR_MODEL), "{}", last_error());
    assert!(!last_error().is_empty());

    // An unknown kernel level is refused before the file is read.
    let mut p2 = p;
    let level = c("warp-drive");
    p2.kernels = level.as_ptr();
    let path = c(model_path().to_str().unwrap());
    // SAFETY: valid pointers.
    let rc = unsafe { ei_model_load(path.as_ptr(), p2, &mut out) };
    assert_eq!(rc, code(EiError::EI_ERR_INVALID_ARG));
    assert!(last_error().contains("warp-drive"), "{}", last_error());
    assert!(out.is_null());

    // The scalar level by name loads, and a success clears the last error.
    let level = c("scalar");
    p2.kernels = level.as_ptr();
    p2.n_threads = 1;
    // SAFETY: valid pointers.
    let rc = unsafe { ei_model_load(path.as_ptr(), p2, &mut out) };
    assert_eq!(rc, OK, "{}", last_error());
    assert_eq!(last_error(), "");
    // SAFETY: live model handle.
    assert_eq!(unsafe { ei_model_context_length(out) }, 8192);
    // A session outlives its model's handle, and gives the same greedy text on scalar
    // kernels.
    let mut s = ptr::null_mut();
    // SAFETY: a live model and a writable out pointer.
    let rc = unsafe { ei_session_new(out, ei_session_params_default(), &mut s) };
    assert_eq!(rc, OK);
    // SAFETY: a live handle, freed once.
    unsafe { ei_model_free(out) };
    let s = CSession(s);
    let mut col = Collect::default();
    let (rc, n) = generate(&s, PROMPT, greedy(6), &mut col);
    assert_eq!(rc, OK, "{}", last_error());
    assert_eq!((col.text, n as usize), rust_greedy(PROMPT, 6));
    drop(s);
    // SAFETY: NULL frees are no-ops.
    unsafe {
        ei_model_free(ptr::null_mut());
        ei_session_free(ptr::null_mut());
        ei_classifier_free(ptr::null_mut());
    }
}

#[test]
fn null_handles_and_outputs_are_errors() {
    let text = c("hi");
    let mut n = 0usize;
    let mut lp = 0f64;
    let mut s = ptr::null_mut();
    // SAFETY: every pointer is NULL or valid; NULLs must be reported, not dereferenced.
    unsafe {
        assert_eq!(
            ei_tokenize(ptr::null(), text.as_ptr(), true, ptr::null_mut(), 0, &mut n),
            code(EiError::EI_ERR_NULL_ARG)
        );
        assert!(last_error().contains("model"), "{}", last_error());
        assert_eq!(
            ei_tokenize(model(), ptr::null(), true, ptr::null_mut(), 0, &mut n),
            code(EiError::EI_ERR_NULL_ARG)
        );
        assert!(last_error().contains("text"), "{}", last_error());
        assert_eq!(
            ei_tokenize(
                model(),
                text.as_ptr(),
                true,
                ptr::null_mut(),
                0,
                ptr::null_mut()
            ),
            code(EiError::EI_ERR_NULL_ARG)
        );
        assert_eq!(
            ei_score(ptr::null(), text.as_ptr(), &mut lp, &mut n),
            code(EiError::EI_ERR_NULL_ARG)
        );
        assert_eq!(
            ei_session_new(ptr::null(), ei_session_params_default(), &mut s),
            code(EiError::EI_ERR_NULL_ARG)
        );
        assert!(s.is_null());
        let mut gen = 7u32;
        assert_eq!(
            ei_generate(
                ptr::null(),
                text.as_ptr(),
                greedy(4),
                None,
                ptr::null_mut(),
                &mut gen
            ),
            code(EiError::EI_ERR_NULL_ARG)
        );
        assert_eq!(gen, 0);
        assert!(last_error().contains("session"), "{}", last_error());
        assert_eq!(
            ei_session_cancel(ptr::null()),
            code(EiError::EI_ERR_NULL_ARG)
        );
        assert_eq!(
            ei_session_reset(ptr::null()),
            code(EiError::EI_ERR_NULL_ARG)
        );
        assert_eq!(ei_session_n_past(ptr::null()), 0);
        let mut label = 0u32;
        assert_eq!(
            ei_classify(ptr::null(), text.as_ptr(), &mut label, ptr::null_mut()),
            code(EiError::EI_ERR_NULL_ARG)
        );
        assert!(ei_classifier_label(ptr::null(), 0).is_null());
        assert!(last_error().contains("classifier"), "{}", last_error());
    }
}

#[test]
fn tokenize_detokenize_round_trip_and_buffer_sizes() {
    let text = "Hello, world! Ünïcödé 🤖 text.";
    let ct = c(text);
    let (m, _) = rust_model();
    let want = m.tokenizer.encode(text, true).unwrap();
    assert!(want.len() > 5);

    // Size query: cap 0, NULL buffer.
    let mut n = 0usize;
    // SAFETY: live model, valid string; cap 0 with a NULL buffer.
    let rc = unsafe { ei_tokenize(model(), ct.as_ptr(), true, ptr::null_mut(), 0, &mut n) };
    assert_eq!(rc, code(EiError::EI_ERR_BUFFER_TOO_SMALL));
    assert_eq!(n, want.len());
    assert!(
        last_error().contains(&want.len().to_string()),
        "{}",
        last_error()
    );

    // One short: still too small, nothing written.
    let mut ids = vec![u32::MAX; want.len()];
    // SAFETY: `ids` has room for cap = len - 1 ids.
    let rc = unsafe {
        ei_tokenize(
            model(),
            ct.as_ptr(),
            true,
            ids.as_mut_ptr(),
            want.len() - 1,
            &mut n,
        )
    };
    assert_eq!(rc, code(EiError::EI_ERR_BUFFER_TOO_SMALL));
    assert_eq!(n, want.len());
    assert!(
        ids.iter().all(|&i| i == u32::MAX),
        "nothing written on failure"
    );

    // SAFETY: `ids` has room for cap = len ids.
    let rc = unsafe {
        ei_tokenize(
            model(),
            ct.as_ptr(),
            true,
            ids.as_mut_ptr(),
            ids.len(),
            &mut n,
        )
    };
    assert_eq!(rc, OK, "{}", last_error());
    assert_eq!(ids, want);
    // add_special = false: no BOS, the same text tokens.
    let mut plain = vec![0u32; want.len()];
    // SAFETY: as above.
    let rc = unsafe {
        ei_tokenize(
            model(),
            ct.as_ptr(),
            false,
            plain.as_mut_ptr(),
            plain.len(),
            &mut n,
        )
    };
    assert_eq!(rc, OK);
    assert_eq!(&plain[..n], &m.tokenizer.encode(text, false).unwrap()[..]);

    // Detokenize: the size, then too small by one (the NUL needs room), then exact.
    let mut len = 0usize;
    // SAFETY: `ids` holds `ids.len()` ids; cap 0 with a NULL buffer.
    let rc = unsafe {
        ei_detokenize(
            model(),
            ids.as_ptr(),
            ids.len(),
            ptr::null_mut(),
            0,
            &mut len,
        )
    };
    assert_eq!(rc, code(EiError::EI_ERR_BUFFER_TOO_SMALL));
    assert_eq!(len, text.len());
    let mut buf = vec![b'#' as c_char; len + 1];
    // SAFETY: `buf` has room for cap = len bytes.
    let rc = unsafe {
        ei_detokenize(
            model(),
            ids.as_ptr(),
            ids.len(),
            buf.as_mut_ptr(),
            len,
            &mut len,
        )
    };
    assert_eq!(rc, code(EiError::EI_ERR_BUFFER_TOO_SMALL));
    assert_eq!(len, text.len());
    assert!(
        buf.iter().all(|&b| b == b'#' as c_char),
        "nothing written on failure"
    );
    // SAFETY: `buf` has room for len + 1 bytes.
    let rc = unsafe {
        ei_detokenize(
            model(),
            ids.as_ptr(),
            ids.len(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut len,
        )
    };
    assert_eq!(rc, OK, "{}", last_error());
    // SAFETY: ei_detokenize wrote a NUL-terminated string into `buf`.
    let back = unsafe { CStr::from_ptr(buf.as_ptr()) };
    assert_eq!(back.to_str().unwrap(), text, "round trip (BOS left out)");

    // An id outside the vocabulary.
    let bad = [1u32, 10_000_000];
    // SAFETY: `bad` holds 2 ids, `buf` has room for its length.
    let rc = unsafe {
        ei_detokenize(
            model(),
            bad.as_ptr(),
            2,
            buf.as_mut_ptr(),
            buf.len(),
            &mut len,
        )
    };
    assert_eq!(rc, code(EiError::EI_ERR_INVALID_ARG));
    assert!(last_error().contains("10000000"), "{}", last_error());

    // Invalid UTF-8 text.
    let bad_text = CString::new(b"caf\xe9".to_vec()).unwrap();
    // SAFETY: NUL-terminated; NULL buffer with cap 0.
    let rc = unsafe { ei_tokenize(model(), bad_text.as_ptr(), true, ptr::null_mut(), 0, &mut n) };
    assert_eq!(rc, code(EiError::EI_ERR_INVALID_UTF8));
}

#[test]
fn greedy_generation_equals_the_rust_generator() {
    let (want, want_n) = rust_greedy(PROMPT, 24);
    assert!(!want.trim().is_empty());
    let s = CSession::new(512);
    let mut col = Collect::default();
    let (rc, n) = generate(&s, PROMPT, greedy(24), &mut col);
    assert_eq!(rc, OK, "{}", last_error());
    assert_eq!(col.text, want);
    assert_eq!(n as usize, want_n);
    assert!(col.pieces > 1, "streamed in pieces");

    // An empty prompt continues: 24 + 16 tokens in two calls are 40 in one.
    let (want40, want40_n) = rust_greedy(PROMPT, 40);
    let mut more = Collect::default();
    let (rc, n2) = generate(&s, "", greedy(16), &mut more);
    assert_eq!(rc, OK, "{}", last_error());
    assert_eq!((n + n2) as usize, want40_n);
    assert_eq!(format!("{}{}", col.text, more.text), want40);

    // After a reset the session starts over (BOS again): the same 24 tokens.
    // SAFETY: a live session, not in use.
    assert_eq!(unsafe { ei_session_reset(s.0) }, OK);
    // SAFETY: as above.
    assert_eq!(unsafe { ei_session_n_past(s.0) }, 0);
    let mut again = Collect::default();
    let (rc, _) = generate(&s, PROMPT, greedy(24), &mut again);
    assert_eq!(rc, OK);
    assert_eq!(again.text, want);

    // Without a callback: nothing streamed, the same tokens generated.
    let quiet = CSession::new(512);
    let cp = c(PROMPT);
    let mut n_quiet = 0u32;
    // SAFETY: a live session, a NUL-terminated prompt, no callback, a writable count.
    let rc = unsafe {
        ei_generate(
            quiet.0,
            cp.as_ptr(),
            greedy(24),
            None,
            ptr::null_mut(),
            &mut n_quiet,
        )
    };
    assert_eq!(rc, OK, "{}", last_error());
    assert_eq!(n_quiet as usize, want_n);

    // Seeded sampling is reproducible across sessions.
    let mut p = ei_generate_params_default();
    p.max_tokens = 16;
    p.seed = 1234;
    let (a, b) = (CSession::new(256), CSession::new(256));
    let (mut ca, mut cb) = (Collect::default(), Collect::default());
    assert_eq!(generate(&a, PROMPT, p, &mut ca).0, OK);
    assert_eq!(generate(&b, PROMPT, p, &mut cb).0, OK);
    assert_eq!(ca.text, cb.text);
}

#[test]
fn nonzero_callback_return_stops_early_and_the_cache_continues() {
    let (want, want_n) = rust_greedy(PROMPT, 30);
    let s = CSession::new(512);
    let mut col = Collect {
        stop_after: Some(3),
        ..Default::default()
    };
    let (rc, n) = generate(&s, PROMPT, greedy(30), &mut col);
    assert_eq!(rc, OK, "stopping from the callback is not an error");
    assert_eq!(col.pieces, 3, "no piece after the callback said stop");
    assert!((3..30).contains(&n), "{n} tokens");
    assert!(want.starts_with(&col.text), "{:?} vs {want:?}", col.text);
    // The stopped generation's tokens are all in the cache: an empty prompt continues it.
    let mut rest = Collect::default();
    let (rc, n2) = generate(&s, "", greedy(30 - n), &mut rest);
    assert_eq!(rc, OK, "{}", last_error());
    assert_eq!((n + n2) as usize, want_n);
    assert_eq!(format!("{}{}", col.text, rest.text), want);
}

#[test]
fn calls_from_inside_the_callback_on_the_same_session_are_busy() {
    let s = CSession::new(256);
    let mut col = Collect {
        reenter: Some(s.0),
        stop_after: Some(2),
        ..Default::default()
    };
    let (rc, _) = generate(&s, PROMPT, greedy(8), &mut col);
    assert_eq!(rc, OK, "{}", last_error());
    assert_eq!(col.reenter_codes.len(), 2);
    for (rc, msg) in &col.reenter_codes {
        assert_eq!(*rc, code(EiError::EI_ERR_BUSY), "{msg}");
        assert!(msg.contains("in use"), "{msg}");
    }
}

#[test]
fn context_full_and_empty_prompts_are_errors() {
    let s = CSession::new(4);
    let mut col = Collect::default();
    let (rc, n) = generate(&s, "one two three four five six seven", greedy(4), &mut col);
    assert_eq!(rc, code(EiError::EI_ERR_CONTEXT_FULL));
    assert_eq!(n, 0);
    assert!(last_error().contains("context"), "{}", last_error());
    // Generation that fills the context stops there without an error.
    let (rc, n) = generate(&s, "Hi", greedy(100), &mut col);
    assert_eq!(rc, OK, "{}", last_error());
    // The prompt, then one token per free position, plus the last one (sampled, not run).
    let prompt_len = rust_model().0.tokenizer.encode("Hi", true).unwrap().len();
    assert_eq!(n as usize, 4 - prompt_len + 1);
    // SAFETY: a live session.
    assert_eq!(unsafe { ei_session_n_past(s.0) }, 4);

    let bad = CString::new(b"\xc3(".to_vec()).unwrap();
    let mut gen = 0;
    // SAFETY: a live session and a NUL-terminated (invalid UTF-8) prompt.
    let rc = unsafe {
        ei_generate(
            s.0,
            bad.as_ptr(),
            greedy(4),
            None,
            ptr::null_mut(),
            &mut gen,
        )
    };
    assert_eq!(rc, code(EiError::EI_ERR_INVALID_UTF8));

    let mut p = greedy(4);
    p.top_p = 2.0;
    let (rc, _) = generate(&s, "x", p, &mut col);
    assert_eq!(rc, code(EiError::EI_ERR_INVALID_ARG));
    assert!(last_error().contains("top_p"), "{}", last_error());
}

struct SendPtr(*const EiSession);
// SAFETY: ei_session_cancel may be called from any thread on a live session (it only locks
// the session's cancel token).
unsafe impl Send for SendPtr {}

#[test]
fn cancel_from_another_thread() {
    let s = CSession::new(1024);
    let (tx, rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel();
    let target = SendPtr(s.0);
    let canceller = std::thread::spawn(move || {
        let target = target;
        // Wait for the generation's first piece.
        rx.recv().unwrap();
        // SAFETY: the session outlives this thread (joined before it is freed).
        let rc = unsafe { ei_session_cancel(target.0) };
        // The callback waits for this: the cancel lands during the generation whatever the
        // timing (the greedy text would end by itself after ~30 tokens).
        resume_tx.send(()).unwrap();
        rc
    });
    let mut col = Collect {
        started: Some(tx),
        resume: Some(resume_rx),
        ..Default::default()
    };
    let (rc, n) = generate(&s, PROMPT, greedy(500), &mut col);
    assert_eq!(canceller.join().unwrap(), OK);
    assert_eq!(rc, code(EiError::EI_ERR_CANCELLED), "{}", last_error());
    assert!(last_error().contains("cancelled"), "{}", last_error());
    assert_eq!(
        col.pieces, 1,
        "stopped at the token boundary after the first piece"
    );
    assert!((1..500).contains(&n), "{n} tokens");
    let (want, _) = rust_greedy(PROMPT, n as usize);
    assert!(
        want.starts_with(&col.text),
        "what came before the cancel is right"
    );

    // The cancel was used up: the next generation runs to its end.
    let mut next = Collect::default();
    let (rc, n) = generate(&s, " And", greedy(4), &mut next);
    assert_eq!(rc, OK, "{}", last_error());
    assert_eq!(n, 4);

    // A cancel while nothing runs stops the next generation at once, and only that one.
    // SAFETY: a live session.
    assert_eq!(unsafe { ei_session_cancel(s.0) }, OK);
    let mut none = Collect::default();
    let (rc, n) = generate(&s, " Then", greedy(4), &mut none);
    assert_eq!(rc, code(EiError::EI_ERR_CANCELLED));
    assert_eq!((n, none.pieces), (0, 0));
    // ... and a reset withdraws a pending cancel.
    // SAFETY: a live session.
    unsafe {
        assert_eq!(ei_session_cancel(s.0), OK);
        assert_eq!(ei_session_reset(s.0), OK);
    }
    let (rc, n) = generate(&s, PROMPT, greedy(4), &mut none);
    assert_eq!(rc, OK, "{}", last_error());
    assert_eq!(n, 4);
}

#[test]
fn two_sessions_on_two_threads_agree() {
    let (want, _) = rust_greedy(PROMPT, 16);
    let texts: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                sc.spawn(|| {
                    let s = CSession::new(256);
                    let mut col = Collect::default();
                    let (rc, _) = generate(&s, PROMPT, greedy(16), &mut col);
                    assert_eq!(rc, OK, "{}", last_error());
                    col.text
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(texts, [want.clone(), want]);
}

#[test]
fn score_is_the_sum_of_token_log_probabilities() {
    let text = "The quick brown fox jumps over the lazy dog.";
    let (m, e) = rust_model();
    let ids = m.tokenizer.encode(text, true).unwrap();
    let mut session = Session::new(e, m.clone(), ids.len());
    let logits = session
        .forward_logits(&ids[..ids.len() - 1], 0, Logits::All)
        .unwrap();
    let want: f64 = logits
        .chunks_exact(m.config.vocab_size)
        .zip(&ids[1..])
        .map(|(row, &t)| log_prob(row, t as usize))
        .sum();

    let ct = c(text);
    let (mut lp, mut n) = (0f64, 0usize);
    // SAFETY: live model, valid string and outputs.
    let rc = unsafe { ei_score(model(), ct.as_ptr(), &mut lp, &mut n) };
    assert_eq!(rc, OK, "{}", last_error());
    assert_eq!(n, ids.len() - 1);
    assert!(lp < 0.0);
    assert!(
        (lp - want).abs() < 1e-6 * want.abs().max(1.0),
        "{lp} vs {want}"
    );

    // A sentence scores higher than the same words shuffled.
    let shuffled = c("dog lazy the over jumps fox brown quick The.");
    let (mut lp2, mut n2) = (0f64, 0usize);
    // SAFETY: as above.
    let rc = unsafe { ei_score(model(), shuffled.as_ptr(), &mut lp2, &mut n2) };
    assert_eq!(rc, OK);
    assert!(lp > lp2, "{lp} vs shuffled {lp2}");

    // Nothing to score: "" is no token, or only BOS.
    let empty = c("");
    // SAFETY: as above.
    let rc = unsafe { ei_score(model(), empty.as_ptr(), &mut lp, &mut n) };
    assert_eq!(rc, code(EiError::EI_ERR_INVALID_ARG));
    assert!(
        last_error().contains("nothing to score"),
        "{}",
        last_error()
    );
}

#[test]
fn classify_equals_the_rust_classifier() {
    let path = classifier_path();
    let rust = LstmClassifier::load(&path).unwrap();
    let engine = Engine::builder().threads(1).build().unwrap();

    let cpath = c(path.to_str().unwrap());
    let mut clf = ptr::null_mut();
    // SAFETY: valid pointers.
    let rc = unsafe { ei_classifier_load(cpath.as_ptr(), 1, &mut clf) };
    assert_eq!(rc, OK, "{}", last_error());
    // SAFETY: a live classifier.
    let n_labels = unsafe { ei_classifier_n_labels(clf) };
    assert_eq!(n_labels as usize, rust.labels.len());
    assert!(n_labels >= 2);
    for (i, l) in rust.labels.iter().enumerate() {
        // SAFETY: in range: a NUL-terminated string owned by the classifier.
        let got = unsafe { CStr::from_ptr(ei_classifier_label(clf, i as u32)) };
        assert_eq!(got.to_str().unwrap(), l);
    }
    // SAFETY: out of range: NULL and a message.
    assert!(unsafe { ei_classifier_label(clf, n_labels) }.is_null());
    assert!(last_error().contains("out of range"), "{}", last_error());

    let texts = [
        "WINNER!! You have won a free prize, call 09061701461 now to claim",
        "Are we still meeting for lunch tomorrow?",
        "URGENT: your mobile number has been awarded a £2000 bonus. Txt CLAIM to 81010",
        "ok see you later",
    ];
    let mut labels = Vec::new();
    for t in texts {
        let want = rust.classify(&engine, t).unwrap();
        let ct = c(t);
        let (mut label, mut prob) = (u32::MAX, -1f32);
        // SAFETY: live classifier, valid string and outputs.
        let rc = unsafe { ei_classify(clf, ct.as_ptr(), &mut label, &mut prob) };
        assert_eq!(rc, OK, "{}", last_error());
        assert_eq!(label as usize, want.label, "{t}");
        assert_eq!(prob, want.probs[want.label], "{t}");
        labels.push(label);
    }
    assert!(
        labels.iter().any(|&l| l != labels[0]),
        "the texts get different classes: {labels:?}"
    );

    let mut label = 0;
    // SAFETY: NULL text / NULL label output / invalid UTF-8 are reported.
    unsafe {
        let bad = CString::new(b"free \xff prize".to_vec()).unwrap();
        assert_eq!(
            ei_classify(clf, bad.as_ptr(), &mut label, ptr::null_mut()),
            code(EiError::EI_ERR_INVALID_UTF8)
        );
        assert!(last_error().contains("UTF-8"), "{}", last_error());
        assert_eq!(
            ei_classify(clf, ptr::null(), &mut label, ptr::null_mut()),
            code(EiError::EI_ERR_NULL_ARG)
        );
        let ct = c("x");
        assert_eq!(
            ei_classify(clf, ct.as_ptr(), ptr::null_mut(), ptr::null_mut()),
            code(EiError::EI_ERR_NULL_ARG)
        );
        ei_classifier_free(clf);
    }

    // Loading errors: a missing file; a decoder GGUF is not a classifier.
    let missing = c("/nonexistent/clf.gguf");
    // SAFETY: valid pointers.
    let rc = unsafe { ei_classifier_load(missing.as_ptr(), 1, &mut clf) };
    assert_eq!(rc, code(EiError::EI_ERR_IO));
    assert!(clf.is_null());
    let decoder = c(model_path().to_str().unwrap());
    // SAFETY: valid pointers.
    let rc = unsafe { ei_classifier_load(decoder.as_ptr(), 1, &mut clf) };
    assert_eq!(rc, code(EiError::EI_ERR_MODEL), "{}", last_error());
    assert!(last_error().contains("lstm-classifier"), "{}", last_error());
}
