//! The bootstrap's random generators: SplitMix64 (seed derivation) and xoshiro256** (draws),
//! with Lemire's unbiased bounded integers.

/// SplitMix64 (Steele, Lea & Flood 2014; the reference `splitmix64.c` by S. Vigna), used to
/// derive per-chunk seeds and to expand them into xoshiro state.
#[derive(Debug, Clone)]
pub(super) struct SplitMix64(u64);

impl SplitMix64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    pub(super) fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        Self::mix(self.0)
    }

    /// The `k`-th output (1-based) of `SplitMix64(seed)`, by random access.
    pub(super) fn nth(seed: u64, k: u64) -> u64 {
        Self::mix(seed.wrapping_add(Self::GAMMA.wrapping_mul(k)))
    }
}

/// xoshiro256** 1.0 (Blackman & Vigna 2018), seeded from four SplitMix64 outputs as its
/// authors recommend.
#[derive(Debug, Clone)]
pub(super) struct Xoshiro256StarStar {
    s: [u64; 4],
}

impl Xoshiro256StarStar {
    pub(super) fn from_splitmix(seed: u64) -> Self {
        let mut sm = SplitMix64(seed);
        Self {
            s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()],
        }
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform integer in `0..n` (`n ≥ 1`), without bias (Lemire 2019, multiply-and-reject).
    pub(super) fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_reference_vectors() {
        // splitmix64.c (Vigna), seed 1234567.
        let mut sm = SplitMix64(1_234_567);
        let want = [
            6_457_827_717_110_365_317,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for (k, w) in want.into_iter().enumerate() {
            assert_eq!(SplitMix64::nth(1_234_567, k as u64 + 1), w);
            assert_eq!(sm.next_u64(), w);
        }
        // xoshiro256** 1.0 from state [1, 2, 3, 4] (as in the rand_xoshiro test suite).
        let mut x = Xoshiro256StarStar { s: [1, 2, 3, 4] };
        let want = [
            11_520,
            0,
            1_509_978_240,
            1_215_971_899_390_074_240,
            1_216_172_134_540_287_360,
            607_988_272_756_665_600,
            16_172_922_978_634_559_625,
            8_476_171_486_693_032_832,
            10_595_114_339_597_558_777,
            2_904_607_092_377_533_576,
        ];
        for w in want {
            assert_eq!(x.next_u64(), w);
        }
        // `below` stays in range and hits every value.
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[x.below(7)] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(x.below(1), 0);
    }
}
