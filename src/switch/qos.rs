//! Token-bucket rate limiting of a port's ingress, in bytes. Time is passed in (nanoseconds on a
//! monotonic clock), so tests drive it with an injected clock.

/// A token bucket: `rate` bytes per second, holding at most `burst` bytes.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_bytes_per_s: u64,
    burst: u64,
    /// Tokens in bytes scaled by 1e9, so refills at nanosecond resolution lose nothing.
    tokens_scaled: u128,
    last_ns: u64,
}

impl TokenBucket {
    /// A bucket that starts full.
    pub fn new(rate_bytes_per_s: u64, burst: u64) -> Self {
        TokenBucket {
            rate_bytes_per_s,
            burst,
            tokens_scaled: u128::from(burst) * 1_000_000_000,
            last_ns: 0,
        }
    }

    /// A bucket for `mbps` megabits per second with a burst of 10 ms (and at least two
    /// full-size frames), as `tc` would size it.
    pub fn from_mbps(mbps: u32) -> Self {
        let rate = u64::from(mbps) * 1_000_000 / 8;
        TokenBucket::new(rate, (rate / 100).max(2 * 1518))
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    pub fn rate_bytes_per_s(&self) -> u64 {
        self.rate_bytes_per_s
    }

    /// Takes `len` bytes' worth of tokens at `now`; false when the frame exceeds the rate.
    #[inline]
    pub fn admit(&mut self, len: usize, now_ns: u64) -> bool {
        if now_ns > self.last_ns {
            let add = u128::from(now_ns - self.last_ns) * u128::from(self.rate_bytes_per_s);
            let cap = u128::from(self.burst) * 1_000_000_000;
            self.tokens_scaled = (self.tokens_scaled + add).min(cap);
            self.last_ns = now_ns;
        }
        let need = len as u128 * 1_000_000_000;
        if self.tokens_scaled >= need {
            self.tokens_scaled -= need;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_rate_over_time() {
        // 8 Mbit/s = 1,000,000 B/s; offer 1000-byte frames at 2,000/s for 10 s.
        let mut b = TokenBucket::from_mbps(8);
        let mut passed = 0u64;
        for i in 0..20_000u64 {
            if b.admit(1000, i * 500_000) {
                passed += 1000;
            }
        }
        let rate = passed as f64 / 10.0;
        assert!((rate - 1_000_000.0).abs() / 1_000_000.0 < 0.05, "{rate}");
    }

    #[test]
    fn burst_is_bounded() {
        let mut b = TokenBucket::new(1000, 3000);
        assert!(b.admit(3000, 0));
        assert!(!b.admit(1, 0));
        assert!(b.admit(1000, 1_000_000_000));
        assert!(!b.admit(3000, 1_000_000_000_000) || !b.admit(1, 1_000_000_000_000));
    }
}
