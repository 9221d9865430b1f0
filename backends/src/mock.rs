//! A backend that does no inference: it advances a [`VirtualClock`] by a deterministic cost per
//! step and emits tokens that are a fixed function of the prompt, so whole runs (timings, token
//! hashes, reports) can be snapshot-tested.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Backend, BackendError, Generation, ModelConfig, Request, TokenObserver};

/// A shared clock in nanoseconds that only moves when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct VirtualClock {
    ns: Arc<AtomicU64>,
}

impl VirtualClock {
    /// A clock at 0 ns.
    pub fn new() -> Self {
        Self::default()
    }

    /// Current time, nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.ns.load(Ordering::SeqCst)
    }

    /// Moves the clock forward by `n` nanoseconds (saturating at `u64::MAX`).
    pub fn advance_ns(&self, n: u64) {
        let _ = self
            .ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(n))
            });
    }
}

/// Virtual cost of the mock backend's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockCost {
    /// Per prompt token of every sequence, during prefill.
    pub prefill_ns_per_token: u64,
    /// Per sequence, for each decode step after the first token.
    pub decode_ns_per_token: u64,
    /// Once per request, before the first token.
    pub fixed_ns: u64,
    /// Deterministic per-request spread added to the first token, as a fraction of `fixed_ns`
    /// in thousandths (100 = up to +10 %), derived from the prompt so the same prompts always
    /// take the same virtual time. 0 (the default) makes every request identical.
    pub jitter_permille: u64,
}

impl Default for MockCost {
    fn default() -> Self {
        MockCost {
            prefill_ns_per_token: 20_000,
            decode_ns_per_token: 150_000,
            fixed_ns: 500_000,
            jitter_permille: 0,
        }
    }
}

impl MockCost {
    /// Virtual time before the first token: `fixed_ns + prefill_ns_per_token · batch · prompt_len`.
    pub fn first_token_ns(&self, batch: usize, prompt_len: usize) -> u64 {
        self.fixed_ns.saturating_add(
            self.prefill_ns_per_token
                .saturating_mul(batch as u64)
                .saturating_mul(prompt_len as u64),
        )
    }

    /// The deterministic extra time of a request whose prompts have these token sums.
    pub fn jitter_ns(&self, prompt_sums: &[u64]) -> u64 {
        if self.jitter_permille == 0 {
            return 0;
        }
        // SplitMix64 finaliser over the sums: a well-mixed, platform-independent draw.
        let mut z = prompt_sums
            .iter()
            .fold(0x9E37_79B9_7F4A_7C15_u64, |h, &s| h.rotate_left(5) ^ s);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let max = self.fixed_ns.saturating_mul(self.jitter_permille) / 1000;
        if max == 0 {
            0
        } else {
            z % (max + 1)
        }
    }

    /// The same cost with every duration (prefill, decode, fixed) multiplied by `factor`,
    /// rounded to whole nanoseconds: one execution slower or faster than another. The jitter
    /// stays a fraction of the scaled `fixed_ns`. A factor that is not finite and positive
    /// leaves the cost as it is.
    pub fn scaled(self, factor: f64) -> MockCost {
        if !(factor.is_finite() && factor > 0.0) || factor == 1.0 {
            return self;
        }
        let scale = |ns: u64| (ns as f64 * factor).round() as u64;
        MockCost {
            prefill_ns_per_token: scale(self.prefill_ns_per_token),
            decode_ns_per_token: scale(self.decode_ns_per_token),
            fixed_ns: scale(self.fixed_ns),
            jitter_permille: self.jitter_permille,
        }
    }

    /// Virtual time of each later step: `decode_ns_per_token · batch`.
    pub fn step_ns(&self, batch: usize) -> u64 {
        self.decode_ns_per_token.saturating_mul(batch as u64)
    }
}

/// A backend with deterministic virtual timings and tokens and no model weights.
///
/// Sequence `i` generates `(sum of prompt i + 31 · step + 7) mod vocab_size` at each step.
#[derive(Debug, Clone)]
pub struct MockBackend {
    config: ModelConfig,
    cost: MockCost,
    clock: VirtualClock,
    fail_after: Option<usize>,
    requests: usize,
}

impl MockBackend {
    /// A mock of a model with `config`, charging `cost` to `clock`.
    pub fn new(config: ModelConfig, cost: MockCost, clock: VirtualClock) -> Self {
        MockBackend {
            config,
            cost,
            clock,
            fail_after: None,
            requests: 0,
        }
    }

    /// Makes the request that follows `after_requests` successful ones fail (once, before doing
    /// any work: no clock movement, no observer call); later requests succeed again.
    /// `failing(0)` fails the very first request.
    pub fn failing(mut self, after_requests: usize) -> Self {
        self.fail_after = Some(after_requests);
        self
    }

    /// The clock this backend advances.
    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    /// The cost model.
    pub fn cost(&self) -> MockCost {
        self.cost
    }

    /// Requests received so far, failed ones included.
    pub fn requests(&self) -> usize {
        self.requests
    }

    /// The token sequence `row` generates at `step`.
    fn token(&self, row_sum: u64, step: usize) -> u32 {
        let v = row_sum
            .wrapping_add(31u64.wrapping_mul(step as u64))
            .wrapping_add(7);
        (v % self.config.vocab_size as u64) as u32
    }
}

impl Backend for MockBackend {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn generate(
        &mut self,
        request: &Request,
        observer: &mut dyn TokenObserver,
    ) -> Result<Generation, BackendError> {
        let index = self.requests;
        self.requests += 1;
        request.validate(&self.config)?;
        if self.fail_after == Some(index) {
            return Err(BackendError::Io {
                path: "mock".to_owned(),
                source: std::io::Error::other(format!(
                    "injected failure of request {} (MockBackend::failing({index}))",
                    index + 1
                )),
            });
        }
        let batch = request.prompts.len();
        let prompt_len = request.prompts[0].len();
        let sums: Vec<u64> = request
            .prompts
            .iter()
            .map(|row| row.iter().map(|&t| u64::from(t)).sum())
            .collect();
        let jitter = self.cost.jitter_ns(&sums);
        let mut tokens = vec![Vec::with_capacity(request.new_tokens); batch];
        for step in 0..request.new_tokens {
            self.clock.advance_ns(if step == 0 {
                self.cost.first_token_ns(batch, prompt_len) + jitter
            } else {
                self.cost.step_ns(batch)
            });
            for (row, &sum) in tokens.iter_mut().zip(&sums) {
                row.push(self.token(sum, step));
            }
            observer.on_token(step);
        }
        Ok(Generation { tokens })
    }

    /// The mock holds no device memory, and a made-up figure would end up in a manifest.
    fn device_memory_bytes(&self) -> Option<u64> {
        None
    }

    /// One-hot logits: 1 at the token [`Backend::generate`] would emit for `prompt` at each step
    /// (whatever the continuation), 0 elsewhere; no clock movement.
    fn logits_probe(
        &mut self,
        prompt: &[u32],
        continuation: &[u32],
    ) -> Result<Vec<Vec<f32>>, BackendError> {
        crate::validate_probe(prompt, continuation, &self.config)?;
        let sum = prompt.iter().map(|&t| u64::from(t)).sum();
        Ok((0..=continuation.len())
            .map(|step| {
                let mut row = vec![0.0; self.config.vocab_size];
                row[self.token(sum, step) as usize] = 1.0;
                row
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BuiltinModel;

    fn mock(cost: MockCost) -> (MockBackend, VirtualClock) {
        let clock = VirtualClock::new();
        let backend = MockBackend::new(BuiltinModel::Small.config(), cost, clock.clone());
        (backend, clock)
    }

    #[test]
    fn clock_is_shared_and_monotone() {
        let clock = VirtualClock::new();
        let other = clock.clone();
        assert_eq!(clock.now_ns(), 0);
        other.advance_ns(5);
        clock.advance_ns(7);
        assert_eq!(clock.now_ns(), 12);
        clock.advance_ns(u64::MAX);
        assert_eq!(other.now_ns(), u64::MAX);
    }

    #[test]
    fn scaling_multiplies_every_duration() {
        let c = MockCost::default().scaled(1.5);
        assert_eq!(c.prefill_ns_per_token, 30_000);
        assert_eq!(c.decode_ns_per_token, 225_000);
        assert_eq!(c.fixed_ns, 750_000);
        assert_eq!(c.first_token_ns(2, 4), 750_000 + 30_000 * 8);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(MockCost::default().scaled(bad), MockCost::default());
        }
    }

    #[test]
    fn jitter_is_deterministic_bounded_and_varies_with_the_prompt() {
        let cost = MockCost {
            jitter_permille: 100,
            ..MockCost::default()
        };
        let draws: Vec<u64> = (0..200).map(|s| cost.jitter_ns(&[s, 7])).collect();
        assert!(
            draws.iter().all(|&j| j <= 50_000),
            "at most 10 % of fixed_ns"
        );
        assert_eq!(
            draws,
            (0..200)
                .map(|s| cost.jitter_ns(&[s, 7]))
                .collect::<Vec<_>>()
        );
        let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
        assert!(distinct.len() > 150, "{}", distinct.len());
        assert_eq!(MockCost::default().jitter_ns(&[1, 2, 3]), 0);
    }

    #[test]
    fn timings_are_exact() {
        let cost = MockCost {
            prefill_ns_per_token: 10,
            decode_ns_per_token: 1000,
            fixed_ns: 100_000,
            jitter_permille: 0,
        };
        let (mut backend, clock) = mock(cost);
        clock.advance_ns(1);
        let request = Request {
            prompts: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![0, 0, 0, 9]],
            new_tokens: 4,
        };
        let mut seen = Vec::new();
        let observer_clock = clock.clone();
        let out = backend
            .generate(&request, &mut |step: usize| {
                seen.push((step, observer_clock.now_ns()))
            })
            .unwrap();
        let first = 1 + 100_000 + 10 * 3 * 4;
        assert_eq!(
            seen,
            vec![
                (0, first),
                (1, first + 3000),
                (2, first + 6000),
                (3, first + 9000)
            ]
        );
        assert_eq!(out.tokens[0], vec![17, 48, 79, 110]);
        assert_eq!(out.tokens[2], vec![16, 47, 78, 109]);
        assert_eq!(backend.requests(), 1);

        // The same request costs the same again, and yields the same tokens.
        let before = clock.now_ns();
        let again = backend.generate(&request, &mut |_s: usize| {}).unwrap();
        assert_eq!(clock.now_ns() - before, first - 1 + 9000);
        assert_eq!(again, out);
    }

    #[test]
    fn default_cost_and_tokens_wrap_the_vocabulary() {
        let (mut backend, clock) = mock(MockCost::default());
        assert_eq!(backend.name(), "mock");
        let request = Request {
            prompts: vec![vec![8191; 2]],
            new_tokens: 2,
        };
        let out = backend.generate(&request, &mut |_s: usize| {}).unwrap();
        assert_eq!(
            out.tokens,
            vec![vec![(2 * 8191 + 7) % 8192, (2 * 8191 + 38) % 8192]]
        );
        assert_eq!(clock.now_ns(), 500_000 + 2 * 20_000 + 150_000);
        assert_eq!(backend.device_memory_bytes(), None);
    }

    #[test]
    fn invalid_requests_match_the_candle_rules() {
        let (mut backend, clock) = mock(MockCost::default());
        let request = Request {
            prompts: vec![vec![1, 2], vec![3]],
            new_tokens: 2,
        };
        let err = backend.generate(&request, &mut |_s: usize| {}).unwrap_err();
        assert!(matches!(err, BackendError::InvalidRequest(_)), "{err}");
        let request = Request {
            prompts: vec![vec![1; 2000]],
            new_tokens: 49,
        };
        let err = backend.generate(&request, &mut |_s: usize| {}).unwrap_err();
        assert!(err.to_string().contains("2049 exceeds"), "{err}");
        assert_eq!(clock.now_ns(), 0);
    }

    #[test]
    fn logits_probe_points_at_the_generated_tokens() {
        let (mut backend, clock) = mock(MockCost::default());
        let prompt = vec![5, 6, 7];
        let rows = backend.logits_probe(&prompt, &[1, 2, 3]).unwrap();
        let generated = backend
            .generate(
                &Request {
                    prompts: vec![prompt.clone()],
                    new_tokens: 4,
                },
                &mut |_s: usize| {},
            )
            .unwrap();
        let argmax: Vec<u32> = rows
            .iter()
            .map(|r| r.iter().position(|&v| v == 1.0).unwrap() as u32)
            .collect();
        assert_eq!(argmax, generated.tokens[0]);
        assert!(rows
            .iter()
            .all(|r| r.len() == 8192 && r.iter().sum::<f32>() == 1.0));
        let before = clock.now_ns();
        backend.logits_probe(&prompt, &[]).unwrap();
        assert_eq!(clock.now_ns(), before);
        assert!(matches!(
            backend.logits_probe(&[], &[1]),
            Err(BackendError::InvalidRequest(_))
        ));
    }

    #[test]
    fn failing_fails_once_after_n_requests() {
        let (backend, clock) = mock(MockCost::default());
        let mut backend = backend.failing(2);
        let request = Request {
            prompts: vec![vec![1, 2, 3]],
            new_tokens: 3,
        };
        let mut calls = 0;
        let mut results = Vec::new();
        for _ in 0..4 {
            let before = clock.now_ns();
            let r = backend.generate(&request, &mut |_s: usize| calls += 1);
            results.push((r.is_ok(), clock.now_ns() > before));
        }
        assert_eq!(
            results,
            vec![(true, true), (true, true), (false, false), (true, true)]
        );
        assert_eq!(calls, 9);
        assert_eq!(backend.requests(), 4);
    }
}
