//! The KV cache: per layer, rows of `kv_dim` keys and values in one element type (f16 bits or
//! f32), indexed by slot.
//!
//! A global layer's slot is the position itself; its rows grow as positions are used, never
//! past the session's capacity. A sliding-window layer keeps a ring of `window` slots
//! (position p in slot `p % window`): the token at p attends to positions `(p − window, p]`,
//! of which the cache must hold the `window − 1` before p (p itself comes from the batch), so
//! the ring bounds that layer's memory whatever the context length.

use std::ops::Range;

use edgeinfer_kernels::Kernels;

use super::KvType;

/// One layer's rows.
pub(super) struct LayerKv<T> {
    k: Vec<T>,
    v: Vec<T>,
    /// Ring size in slots (`None`: one slot per position).
    ring: Option<usize>,
    /// Lowest position whose row is still held (a ring overwrites older ones).
    held_from: usize,
}

impl<T: Copy + Default> LayerKv<T> {
    fn new(ring: Option<usize>) -> Self {
        LayerKv {
            k: Vec::new(),
            v: Vec::new(),
            ring,
            held_from: 0,
        }
    }

    /// Store rows `k`, `v` (`n × kv_dim`) for positions `pos..pos + n`. Only the last `ring`
    /// rows are kept by a ring; a global layer forgets every position from `pos` on first.
    fn write(&mut self, pos: usize, k: &[T], v: &[T], kvd: usize, max_rows: usize) {
        let n = k.len() / kvd;
        match self.ring {
            None => {
                self.k.truncate(pos * kvd);
                self.v.truncate(pos * kvd);
                let want = (pos + n) * kvd;
                if want > self.k.capacity() {
                    // Amortized growth, never past the session's capacity.
                    let target = want.max(2 * self.k.capacity()).min(max_rows * kvd);
                    self.k.reserve_exact(target - self.k.len());
                    self.v.reserve_exact(target - self.v.len());
                }
                self.k.extend_from_slice(k);
                self.v.extend_from_slice(v);
            }
            Some(slots) => {
                if self.k.len() < slots * kvd {
                    // The whole ring at once (its size is the layer's bound anyway).
                    for x in [&mut self.k, &mut self.v] {
                        x.reserve_exact(slots * kvd - x.len());
                        x.resize(slots * kvd, T::default());
                    }
                }
                for r in n.saturating_sub(slots)..n {
                    let at = (pos + r) % slots * kvd;
                    self.k[at..at + kvd].copy_from_slice(&k[r * kvd..(r + 1) * kvd]);
                    self.v[at..at + kvd].copy_from_slice(&v[r * kvd..(r + 1) * kvd]);
                }
                self.held_from = self.held_from.max((pos + n).saturating_sub(slots));
            }
        }
    }

    /// Whether the rows a token at `n` needs (from `n + 1 − ring` up to `n`) are all held.
    fn can_continue_at(&self, n: usize) -> bool {
        match self.ring {
            None => true,
            Some(slots) => self.held_from <= (n + 1).saturating_sub(slots),
        }
    }

    fn forget(&mut self) {
        self.k.clear();
        self.v.clear();
        self.held_from = 0;
    }

    fn bytes(&self) -> usize {
        (self.k.capacity() + self.v.capacity()) * std::mem::size_of::<T>()
    }
}

/// Keys and values of every layer, in one element type.
pub(super) enum KvCache {
    F16(Vec<LayerKv<u16>>),
    F32(Vec<LayerKv<f32>>),
}

/// The slots holding positions `range` of a layer (in position order: at most two runs of a
/// ring, one for a global layer).
pub(super) fn slots(ring: Option<usize>, range: Range<usize>) -> [Range<usize>; 2] {
    match ring {
        None => [range, 0..0],
        Some(w) => {
            debug_assert!(range.len() <= w);
            let a = range.start % w;
            let end = a + range.len();
            if end <= w {
                [a..end, 0..0]
            } else {
                [a..w, 0..end - w]
            }
        }
    }
}

/// A layer's cache as the attention reads it.
#[derive(Clone, Copy)]
pub(super) struct LayerView<'a> {
    pub kv: KvView<'a>,
    pub ring: Option<usize>,
}

/// Keys and values, rows of some stride, in the cache's element type.
#[derive(Clone, Copy)]
pub(super) enum KvView<'a> {
    F16(&'a [u16], &'a [u16]),
    F32(&'a [f32], &'a [f32]),
}

impl<'a> KvView<'a> {
    /// Rows `range` of keys and values laid out `kvd` values per row.
    pub fn rows(self, range: Range<usize>, kvd: usize) -> KvView<'a> {
        let r = range.start * kvd..range.end * kvd;
        match self {
            KvView::F16(k, v) => KvView::F16(&k[r.clone()], &v[r]),
            KvView::F32(k, v) => KvView::F32(&k[r.clone()], &v[r]),
        }
    }
}

impl KvCache {
    /// An empty cache of `t` whose layer `i` is a ring of `rings[i]` slots if given.
    pub fn new(t: KvType, rings: &[Option<usize>]) -> Self {
        match t {
            KvType::F16 => KvCache::F16(rings.iter().map(|&r| LayerKv::new(r)).collect()),
            KvType::F32 => KvCache::F32(rings.iter().map(|&r| LayerKv::new(r)).collect()),
        }
    }

    pub fn kv_type(&self) -> KvType {
        match self {
            KvCache::F16(_) => KvType::F16,
            KvCache::F32(_) => KvType::F32,
        }
    }

    /// Bytes allocated for keys and values.
    pub fn bytes(&self) -> usize {
        match self {
            KvCache::F16(l) => l.iter().map(LayerKv::bytes).sum(),
            KvCache::F32(l) => l.iter().map(LayerKv::bytes).sum(),
        }
    }

    /// Whether every layer holds what a token at position `n` needs of positions before it.
    pub fn can_continue_at(&self, n: usize) -> bool {
        match self {
            KvCache::F16(l) => l.iter().all(|l| l.can_continue_at(n)),
            KvCache::F32(l) => l.iter().all(|l| l.can_continue_at(n)),
        }
    }

    /// Drop every row (positions restart at 0).
    pub fn forget(&mut self) {
        match self {
            KvCache::F16(l) => l.iter_mut().for_each(LayerKv::forget),
            KvCache::F32(l) => l.iter_mut().for_each(LayerKv::forget),
        }
    }

    /// Store layer `layer`'s rows for positions `pos..` (as made by [`encode`]).
    pub fn write(
        &mut self,
        layer: usize,
        pos: usize,
        rows: KvView<'_>,
        kvd: usize,
        max_rows: usize,
    ) {
        match (self, rows) {
            (KvCache::F16(l), KvView::F16(k, v)) => l[layer].write(pos, k, v, kvd, max_rows),
            (KvCache::F32(l), KvView::F32(k, v)) => l[layer].write(pos, k, v, kvd, max_rows),
            _ => unreachable!("rows are encoded for the cache's own type"),
        }
    }

    pub fn layer(&self, layer: usize) -> LayerView<'_> {
        match self {
            KvCache::F16(l) => LayerView {
                kv: KvView::F16(&l[layer].k, &l[layer].v),
                ring: l[layer].ring,
            },
            KvCache::F32(l) => LayerView {
                kv: KvView::F32(&l[layer].k, &l[layer].v),
                ring: l[layer].ring,
            },
        }
    }
}

/// Keys and values in the element type `t`: f32 as they are, f16 converted into `k16`/`v16`
/// (reused, with table `kern`) — what the cache will hold, so attention over a batch's own rows
/// reads the same values as it later reads from the cache.
pub(super) fn encode<'a>(
    kern: &Kernels,
    t: KvType,
    k: &'a [f32],
    v: &'a [f32],
    k16: &'a mut Vec<u16>,
    v16: &'a mut Vec<u16>,
) -> KvView<'a> {
    match t {
        KvType::F32 => KvView::F32(k, v),
        KvType::F16 => {
            for (bits, x) in [(&mut *k16, k), (&mut *v16, v)] {
                bits.clear();
                bits.resize(x.len(), 0);
                kern.to_f16(x, bits);
            }
            KvView::F16(k16, v16)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_slots_wrap_once() {
        assert_eq!(slots(None, 3..9), [3..9, 0..0]);
        assert_eq!(slots(Some(4), 0..3), [0..3, 0..0]);
        assert_eq!(slots(Some(4), 5..8), [1..4, 0..0]);
        assert_eq!(slots(Some(4), 6..9), [2..4, 0..1]);
        assert_eq!(slots(Some(4), 4..4), [0..0, 0..0]);
    }

    #[test]
    fn ring_keeps_the_last_positions_and_knows_what_it_lost() {
        let mut l = LayerKv::<f32>::new(Some(3));
        let rows = |p: std::ops::Range<usize>| -> Vec<f32> { p.map(|x| x as f32).collect() };
        l.write(0, &rows(0..2), &rows(0..2), 1, 100);
        assert_eq!(l.k, [0.0, 1.0, 0.0]);
        assert!(l.can_continue_at(1) && l.can_continue_at(0));
        l.write(2, &rows(2..7), &rows(2..7), 1, 100);
        // positions 4, 5, 6 in slots 1, 2, 0
        assert_eq!(l.k, [6.0, 4.0, 5.0]);
        assert_eq!(l.held_from, 4);
        assert_eq!(l.bytes(), 2 * 3 * 4);
        // a token at 7 needs 5 and 6; at 6 needs 4 and 5; at 5 would need 3
        assert!(l.can_continue_at(7) && l.can_continue_at(6) && !l.can_continue_at(5));
        let mut r = LayerKv::<f32>::new(Some(4));
        r.write(0, &rows(0..6), &rows(0..6), 1, 100);
        assert_eq!(
            (r.k.as_slice(), r.held_from),
            (&[4.0, 5.0, 2.0, 3.0][..], 2)
        );
        let mut g = LayerKv::<f32>::new(None);
        g.write(0, &rows(0..4), &rows(0..4), 1, 6);
        assert!(g.can_continue_at(1));
        g.write(2, &rows(7..9), &rows(7..9), 1, 6);
        assert_eq!(g.k, [0.0, 1.0, 7.0, 8.0]);
        assert!(g.k.capacity() <= 6);
    }
}
