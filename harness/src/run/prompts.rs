//! The seeded prompts of every request, and the hashes of token rows that the results record.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use crate::plan::Cell;

/// Prompt token ids for one request: ChaCha seeded by (scenario seed, the cell's workload,
/// repetition, warm-up flag) — not by backend, device or dtype, so cells that differ only in how
/// they run see identical prompts.
pub fn prompts(seed: u64, cell: &Cell, rep: u32, warmup: bool, vocab: usize) -> Vec<Vec<u32>> {
    let material = format!(
        "seed={seed};{};rep={rep};warmup={warmup}",
        cell.workload_key()
    );
    let digest: [u8; 32] = Sha256::digest(material.as_bytes()).into();
    let mut rng = ChaCha20Rng::from_seed(digest);
    (0..cell.config.batch_size)
        .map(|_| {
            (0..cell.config.prompt_tokens)
                .map(|_| rng.random_range(0..vocab as u32))
                .collect()
        })
        .collect()
}

/// First 16 hex characters of the SHA-256 of token rows (little-endian ids, rows separated).
pub(crate) fn token_hash(rows: &[Vec<u32>]) -> String {
    let mut h = Sha256::new();
    for row in rows {
        h.update((row.len() as u64).to_le_bytes());
        for t in row {
            h.update(t.to_le_bytes());
        }
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
