//! Rotary position embeddings in HF's "rotate_half" convention.
//!
//! HF Llama splits each head vector into halves `[x1, x2]` and rotates pair `(x1[i],
//! x2[i])` by angle `pos * inv_freq[i]`: `x * cos + rotate_half(x) * sin` with
//! `rotate_half([x1, x2]) = [-x2, x1]` and `cos`/`sin` repeated over both halves.
//! burn's built-in `RotaryEncoding` rotates interleaved pairs `(x[2i], x[2i+1])`
//! instead, which does not match HF weights, so this module implements the HF form.
//!
//! [`Rope`] holds the inverse frequencies (with `linear`/`llama3` scaling applied, as in
//! transformers' `ROPE_INIT_FUNCTIONS`); [`Rope::tables`] builds `cos`/`sin` for a range
//! of positions. Frequencies and angles are computed in f32 the way transformers does,
//! so phases agree bit for bit on ordinary positions. A model with two rotary tables
//! (Gemma 3: global and local blocks have their own base) merges both into one
//! [`RopeTables`] ([`RopeTables::merge`]); each block picks its own.

use burn::prelude::*;

use super::config::{RopeScaling, RopeSettings};

/// Inverse rotary frequencies for one head width.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    inv_freq: Vec<f32>,
    head_dim: usize,
}

/// `cos` and `sin` for a run of positions, laid out for activations `[batch, seq,
/// heads, head_dim]`: per head count, a `[1 | batch, seq * heads * head_dim]` table (one
/// row shared by the batch, or one per batch row), so that the
/// rotation is a plain row-broadcast product (the CPU backend's fast path; a `[seq,
/// head_dim]` table broadcast over heads walks strided indices and is ~100x slower).
#[derive(Debug, Clone)]
pub struct RopeTables<B: Backend> {
    len: usize,
    /// `(local, heads, cos, sin)`, cos/sin repeated over both halves of each head and
    /// over heads; `local` marks the tables of the local rotary frequencies.
    by_heads: Vec<(bool, usize, Tensor<B, 2>, Tensor<B, 2>)>,
}

impl Rope {
    /// Frequencies for `head_dim` with the given settings.
    pub fn new(head_dim: usize, settings: RopeSettings) -> Self {
        let half = head_dim / 2;
        let base = settings.theta as f32;
        // transformers: 1 / base ** (arange(0, dim, 2).float() / dim), in float32.
        let mut inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        match settings.scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                for f in &mut inv_freq {
                    *f /= factor as f32;
                }
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_ctx,
            } => {
                let low_freq_wavelen = old_ctx / low_freq_factor;
                let high_freq_wavelen = old_ctx / high_freq_factor;
                for f in &mut inv_freq {
                    let freq = *f as f64;
                    let wavelen = 2.0 * std::f64::consts::PI / freq;
                    let scaled = if wavelen > low_freq_wavelen {
                        freq / factor
                    } else if wavelen < high_freq_wavelen {
                        freq
                    } else {
                        let smooth = (old_ctx / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * freq / factor + smooth * freq
                    };
                    *f = scaled as f32;
                }
            }
        }
        Rope { inv_freq, head_dim }
    }

    /// The head width these frequencies are for.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// `cos`/`sin` tables for explicit positions, for activations with each of the given
    /// head counts (e.g. query heads and key/value heads): one row of positions per
    /// batch row (all of the same length), or a single row shared by the whole batch.
    /// `local` marks them as the tables of blocks with [`Attention::local_rope`](
    /// super::attention::Attention::local_rope).
    pub fn tables_at<B: Backend>(
        &self,
        rows: &[Vec<usize>],
        head_counts: &[usize],
        local: bool,
        device: &B::Device,
    ) -> RopeTables<B> {
        let len = rows.first().map_or(0, Vec::len);
        debug_assert!(rows.iter().all(|r| r.len() == len), "ragged position rows");
        let half = self.inv_freq.len();
        // Per position: cos and sin repeated over both halves of the head.
        let mut cos = Vec::with_capacity(rows.len() * len * self.head_dim);
        let mut sin = Vec::with_capacity(rows.len() * len * self.head_dim);
        let mut row_cos = vec![0f32; half];
        let mut row_sin = vec![0f32; half];
        for &pos in rows.iter().flatten() {
            for (i, f) in self.inv_freq.iter().enumerate() {
                // The angle is an f32 product as in transformers; cos/sin then evaluated
                // in f64 and rounded, i.e. correctly rounded f32 results.
                let angle = (pos as f32 * f) as f64;
                row_cos[i] = angle.cos() as f32;
                row_sin[i] = angle.sin() as f32;
            }
            cos.extend_from_slice(&row_cos);
            cos.extend_from_slice(&row_cos);
            sin.extend_from_slice(&row_sin);
            sin.extend_from_slice(&row_sin);
        }
        let mut by_heads: Vec<(bool, usize, Tensor<B, 2>, Tensor<B, 2>)> = Vec::new();
        for &heads in head_counts {
            if by_heads.iter().any(|(_, h, _, _)| *h == heads) {
                continue;
            }
            let expand = |table: &[f32]| {
                let mut flat = Vec::with_capacity(table.len() * heads);
                for pos in table.chunks(self.head_dim) {
                    for _ in 0..heads {
                        flat.extend_from_slice(pos);
                    }
                }
                let shape = [rows.len(), len * heads * self.head_dim];
                Tensor::from_data(TensorData::new(flat, shape), device)
            };
            by_heads.push((local, heads, expand(&cos), expand(&sin)));
        }
        RopeTables { len, by_heads }
    }
}

impl<B: Backend> RopeTables<B> {
    /// These tables plus `other`'s (the same positions, other frequencies).
    pub fn merge(mut self, other: RopeTables<B>) -> Self {
        debug_assert_eq!(self.len, other.len, "merged rope tables of other lengths");
        self.by_heads.extend(other.by_heads);
        self
    }

    /// Rotate `x` of shape `[batch, seq, heads, head_dim]` with the global or the
    /// `local` frequencies (seq must match the tables, and the tables must have been
    /// built for this head count and kind).
    pub fn apply(&self, x: Tensor<B, 4>, local: bool) -> Tensor<B, 4> {
        let [b, t, h, d] = x.dims();
        debug_assert_eq!(t, self.len, "rope tables cover {} positions", self.len);
        let (_, _, cos, sin) = self
            .by_heads
            .iter()
            .find(|(l, heads, _, _)| *l == local && *heads == h)
            .unwrap_or_else(|| panic!("rope tables were not built for {h} heads (local: {local})"));
        let half = d / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let flat = [b, t * h * d];
        (x.reshape(flat) * cos.clone() + rotated.reshape(flat) * sin.clone()).reshape([b, t, h, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let plain = Rope::new(
            128,
            RopeSettings {
                theta: 500000.0,
                scaling: RopeScaling::None,
            },
        );
        let scaled = Rope::new(
            128,
            RopeSettings {
                theta: 500000.0,
                scaling: RopeScaling::Llama3 {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 8192.0,
                },
            },
        );
        assert_eq!(plain.inv_freq[0], scaled.inv_freq[0]);
        let last = plain.inv_freq.len() - 1;
        assert!((plain.inv_freq[last] / 8.0 - scaled.inv_freq[last]).abs() < 1e-12);
    }
}
