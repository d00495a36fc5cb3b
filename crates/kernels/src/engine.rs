//! An [`Engine`]: the compute resources a model runs on, chosen explicitly — a thread pool it
//! owns, one kernel table ([`Level`]) and the decoder's executor setting. Nothing here reads
//! the environment; a program that wants environment variables reads them and passes the
//! values to the builder.
//!
//! ```
//! use edgeinfer_kernels::{Engine, Level};
//! let engine = Engine::builder().threads(2).level(Level::Scalar).build()?;
//! assert_eq!((engine.threads(), engine.level()), (2, Level::Scalar));
//! // Work run through the engine uses its pool (and nothing else's).
//! assert_eq!(engine.install(rayon::current_num_threads), 2);
//! # Ok::<(), edgeinfer_kernels::EngineError>(())
//! ```

use std::sync::Arc;

use crate::{available_levels, Kernels, Level};

/// Errors building an [`Engine`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("kernel level {level} is not available on this CPU (available: {available})")]
    LevelUnavailable { level: Level, available: String },
    #[error("an engine needs at least one thread")]
    NoThreads,
    #[error("starting the engine's thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
}

/// A thread pool, a kernel table and the decoder's executor setting. Cheap to clone (the
/// clones share one pool); the pool's threads end when the last clone is dropped.
/// `Send + Sync + 'static`: hand it to any thread, keep it in a C struct or a server's state.
///
/// Every computation of the inference crates (`edgeinfer-transformer`'s sessions,
/// `edgeinfer-lstm`'s classifier) runs in [`Engine::install`] with [`Engine::kernels`]: one
/// engine's settings never leak into another's, and several engines with different levels or
/// thread counts can work side by side in one process.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    pool: rayon::ThreadPool,
    kernels: &'static Kernels,
    decode_team: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("threads", &self.threads())
            .field("level", &self.level())
            .field("decode_team", &self.decode_team())
            .finish()
    }
}

impl Engine {
    /// A builder: all cores, the best level this CPU has, the decode team on.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// An engine with the builder's defaults.
    pub fn new() -> Result<Engine, EngineError> {
        Engine::builder().build()
    }

    /// The kernel table every computation of this engine uses.
    pub fn kernels(&self) -> &'static Kernels {
        self.inner.kernels
    }

    /// The level of [`Engine::kernels`].
    pub fn level(&self) -> Level {
        self.inner.kernels.level
    }

    /// Threads of the engine's pool.
    pub fn threads(&self) -> usize {
        self.inner.pool.current_num_threads()
    }

    /// Whether a decoder's single-token step with several threads runs as one broadcast of the
    /// pool (a thread team, the default) rather than forking and joining it around each product.
    /// Both give the same bits.
    pub fn decode_team(&self) -> bool {
        self.inner.decode_team
    }

    /// Run `op` in the engine's pool (in this thread when it already is one of the pool's):
    /// rayon's parallel iterators and `rayon::broadcast` inside it use this pool.
    pub fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        self.inner.pool.install(op)
    }

    /// The engine's pool.
    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.inner.pool
    }
}

/// Settings of an [`Engine`]; see [`Engine::builder`].
#[derive(Clone, Debug)]
pub struct EngineBuilder {
    threads: Option<usize>,
    level: Option<Level>,
    decode_team: bool,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            threads: None,
            level: None,
            decode_team: true,
        }
    }
}

impl EngineBuilder {
    /// Threads of the pool (default: the available parallelism).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// The kernel level (default: [`Level::best`]). Building fails if the CPU lacks it.
    pub fn level(mut self, level: Level) -> Self {
        self.level = Some(level);
        self
    }

    /// See [`Engine::decode_team`] (default on). Turn it off for a pool whose threads may
    /// block outside rayon: a team step returns only after every thread took part.
    pub fn decode_team(mut self, on: bool) -> Self {
        self.decode_team = on;
        self
    }

    /// Start the pool.
    pub fn build(self) -> Result<Engine, EngineError> {
        let level = self.level.unwrap_or_else(Level::best);
        let kernels = Kernels::for_level(level).ok_or_else(|| EngineError::LevelUnavailable {
            level,
            available: available_levels()
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let threads = match self.threads {
            Some(0) => return Err(EngineError::NoThreads),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("edgeinfer-{i}"))
            .build()?;
        Ok(Engine {
            inner: Arc::new(Inner {
                pool,
                kernels,
                decode_team: self.decode_team,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Engine>();
    }

    /// Every level the CPU lacks is an error naming it; every level it has builds, with that
    /// table and that many threads.
    #[test]
    fn levels_are_explicit_and_checked() {
        let mut unavailable = 0;
        for level in Level::ALL {
            let r = Engine::builder().threads(1).level(level).build();
            if level.is_available() {
                let e = r.unwrap();
                assert_eq!(e.level(), level);
                assert_eq!(e.kernels().level, level);
            } else {
                unavailable += 1;
                let err = r.unwrap_err();
                assert!(
                    matches!(err, EngineError::LevelUnavailable { level: l, .. } if l == level)
                );
                let msg = err.to_string();
                assert!(msg.contains(level.name()), "{msg}");
                assert!(msg.contains("scalar"), "{msg}");
            }
        }
        // Another architecture's levels at least.
        assert!(unavailable >= 2);
        assert!(matches!(
            Engine::builder().threads(0).build(),
            Err(EngineError::NoThreads)
        ));
    }

    #[test]
    fn defaults_and_pool() {
        let e = Engine::builder()
            .threads(3)
            .decode_team(false)
            .build()
            .unwrap();
        assert_eq!(e.level(), Level::best());
        assert_eq!(e.threads(), 3);
        assert!(!e.decode_team());
        assert_eq!(e.install(rayon::current_num_threads), 3);
        let name = e.install(|| std::thread::current().name().map(str::to_string));
        assert!(name.is_some_and(|n| n.starts_with("edgeinfer-")));
        let clone = e.clone();
        drop(e);
        assert_eq!(clone.install(|| 7), 7);
        assert!(Engine::new().unwrap().decode_team());
    }
}
