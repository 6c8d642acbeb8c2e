//! A small lossy-to-a-resolution codec for waveform chunks: quantize each sample to a multiple of
//! a resolution (1 µV for an ECG in mV), delta to the previous sample, zigzag, LEB128 varint.
//! Neighbouring samples of a physiological signal differ by little, so most samples take one or
//! two bytes instead of four.
//!
//! A chunk the quantizer cannot represent exactly enough (NaN or infinite samples, which devices
//! use for gaps, or values too large for the resolution) is stored raw as little-endian f32, so
//! no chunk is ever refused or silently altered beyond the resolution.
//!
//! Pure Rust, no I/O; the format is documented in `schema/v1.sql` for readers in other languages.

/// How a chunk's bytes are laid out; stored in `waveform_chunks.encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Quantized, delta, zigzag, LEB128 varint.
    DeltaVarint,
    /// Raw little-endian f32.
    F32Le,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::DeltaVarint => "delta-varint",
            Encoding::F32Le => "f32le",
        }
    }

    pub fn parse(name: &str) -> Option<Encoding> {
        match name {
            "delta-varint" => Some(Encoding::DeltaVarint),
            "f32le" => Some(Encoding::F32Le),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("waveform data ends inside a sample")]
    Truncated,
    #[error("waveform data holds {found} samples, expected {expected}")]
    SampleCount { expected: usize, found: usize },
    #[error("waveform varint is longer than 64 bits")]
    Overlong,
    #[error("waveform resolution must be positive and finite")]
    BadResolution,
}

/// Quantized magnitudes stay below 2^52 so that deltas never overflow and every quantized value
/// converts back to f64 exactly.
const MAX_QUANTIZED: f64 = (1u64 << 52) as f64;

/// Encodes `samples`, choosing delta-varint where every sample quantizes and raw f32 otherwise.
/// Decoded delta-varint samples are within `resolution / 2` of the originals (plus f32 rounding).
pub fn encode(samples: &[f32], resolution: f64) -> Result<(Encoding, Vec<u8>), CodecError> {
    if !(resolution.is_finite() && resolution > 0.0) {
        return Err(CodecError::BadResolution);
    }
    let quantized: Option<Vec<i64>> = samples
        .iter()
        .map(|&sample| {
            let q = (f64::from(sample) / resolution).round();
            (q.is_finite() && q.abs() < MAX_QUANTIZED).then_some(q as i64)
        })
        .collect();
    let Some(quantized) = quantized else {
        return Ok((Encoding::F32Le, encode_f32le(samples)));
    };
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    let mut previous = 0i64;
    for q in quantized {
        write_varint(&mut bytes, zigzag(q - previous));
        previous = q;
    }
    Ok((Encoding::DeltaVarint, bytes))
}

/// Encodes `samples` raw, losslessly: for metrics without a known resolution, and for gaps.
pub fn encode_f32le(samples: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(samples.len() * 4);
    for sample in samples {
        bytes.extend_from_slice(&sample.to_le_bytes());
    }
    bytes
}

/// Decodes exactly `n_samples` samples; trailing or missing bytes are an error.
pub fn decode(
    encoding: Encoding,
    bytes: &[u8],
    n_samples: usize,
    resolution: f64,
) -> Result<Vec<f32>, CodecError> {
    match encoding {
        Encoding::F32Le => {
            let words = bytes.chunks_exact(4);
            if !words.remainder().is_empty() {
                return Err(CodecError::Truncated);
            }
            if words.len() != n_samples {
                return Err(CodecError::SampleCount {
                    expected: n_samples,
                    found: words.len(),
                });
            }
            Ok(words
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        }
        Encoding::DeltaVarint => {
            if !(resolution.is_finite() && resolution > 0.0) {
                return Err(CodecError::BadResolution);
            }
            let mut samples = Vec::with_capacity(n_samples);
            let mut rest = bytes;
            let mut value = 0i64;
            while !rest.is_empty() {
                let (raw, used) = read_varint(rest)?;
                rest = &rest[used..];
                value = value.wrapping_add(unzigzag(raw));
                samples.push((value as f64 * resolution) as f32);
            }
            if samples.len() != n_samples {
                return Err(CodecError::SampleCount {
                    expected: n_samples,
                    found: samples.len(),
                });
            }
            Ok(samples)
        }
    }
}

/// The resolution for a metric that shows `decimals` decimals: one decimal finer than shown,
/// so quantization never changes a displayed digit (ECG in mV with 2 decimals: 1 µV).
pub fn resolution_for_decimals(decimals: u8) -> f64 {
    10f64.powi(-(i32::from(decimals) + 1))
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Returns the value and the number of bytes it took.
fn read_varint(bytes: &[u8]) -> Result<(u64, usize), CodecError> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate() {
        if i == 10 || (i == 9 && byte > 1) {
            return Err(CodecError::Overlong);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(CodecError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small seeded generator (xorshift64*), so failures reproduce without a test dependency.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }
    }

    fn assert_close(original: &[f32], decoded: &[f32], resolution: f64) {
        assert_eq!(original.len(), decoded.len());
        for (i, (&a, &b)) in original.iter().zip(decoded).enumerate() {
            // Half a step of quantization, plus f32 rounding of both values.
            let tolerance = resolution / 2.0 + f64::from(a.abs().max(b.abs())) * 1e-6 + 1e-12;
            assert!(
                (f64::from(a) - f64::from(b)).abs() <= tolerance,
                "sample {i}: {a} decoded as {b} at resolution {resolution}"
            );
        }
    }

    #[test]
    fn zigzag_and_varint_round_trip_at_the_edges() {
        for n in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            i64::MAX,
            i64::MIN,
            1 << 40,
            -(1 << 40),
        ] {
            assert_eq!(unzigzag(zigzag(n)), n);
            let mut bytes = Vec::new();
            write_varint(&mut bytes, zigzag(n));
            assert_eq!(read_varint(&bytes), Ok((zigzag(n), bytes.len())));
        }
        assert_eq!(read_varint(&[0x80, 0x80]), Err(CodecError::Truncated));
        assert_eq!(read_varint(&[0xff; 11]), Err(CodecError::Overlong));
    }

    #[test]
    fn random_chunks_round_trip_within_the_resolution() {
        let mut rng = Rng(0x5eed_2024_0bad_cafe);
        for case in 0..2_000 {
            let resolution = [1e-3, 1e-2, 1e-1, 1.0, 0.5][rng.below(5) as usize];
            let n = rng.below(300) as usize;
            let scale = [1.0, 10.0, 1_000.0, 1e6][rng.below(4) as usize];
            let mut samples = Vec::with_capacity(n);
            let mut walk = 0.0;
            for _ in 0..n {
                // Mix a random walk (the usual shape) with jumps (the worst case for deltas).
                walk += (rng.unit() - 0.5) * scale * 0.01;
                let sample = if rng.below(20) == 0 {
                    (rng.unit() - 0.5) * scale
                } else {
                    walk
                };
                samples.push(sample as f32);
            }
            let (encoding, bytes) = encode(&samples, resolution).unwrap();
            assert_eq!(encoding, Encoding::DeltaVarint, "case {case}");
            let decoded = decode(encoding, &bytes, n, resolution).unwrap();
            assert_close(&samples, &decoded, resolution);
        }
    }

    #[test]
    fn gaps_and_huge_values_fall_back_to_raw_f32_losslessly() {
        for samples in [
            vec![0.1, f32::NAN, 0.3],
            vec![f32::INFINITY, 1.0],
            vec![f32::MAX, 0.0],
        ] {
            let (encoding, bytes) = encode(&samples, 1e-3).unwrap();
            assert_eq!(encoding, Encoding::F32Le);
            let decoded = decode(encoding, &bytes, samples.len(), 1e-3).unwrap();
            let bits = |v: &[f32]| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&decoded), bits(&samples));
        }
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_panic() {
        let (encoding, bytes) = encode(&[1.0, 2.0, 3.0], 1e-3).unwrap();
        assert!(matches!(
            decode(encoding, &bytes, 4, 1e-3),
            Err(CodecError::SampleCount { .. })
        ));
        assert_eq!(
            decode(encoding, &bytes[..bytes.len() - 1], 3, 1e-3),
            Err(CodecError::Truncated)
        );
        assert_eq!(
            decode(Encoding::F32Le, &[0, 0, 0], 1, 1e-3),
            Err(CodecError::Truncated)
        );
        assert_eq!(encode(&[1.0], 0.0), Err(CodecError::BadResolution));
    }

    /// A synthetic lead II at 250 Hz in mV: P wave, QRS complex, T wave at 72 beats a minute,
    /// with baseline wander and a few µV of noise.
    fn synthetic_ecg(n_samples: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng(seed);
        let rate_hz = 250.0;
        let beat_s = 60.0 / 72.0;
        let bump = |t: f64, centre: f64, width: f64, height: f64| {
            height * (-((t - centre) / width).powi(2)).exp()
        };
        (0..n_samples)
            .map(|i| {
                let t = i as f64 / rate_hz;
                let phase = t % beat_s;
                let wave = bump(phase, 0.20, 0.025, 0.15) // P
                    + bump(phase, 0.33, 0.008, -0.10) // Q
                    + bump(phase, 0.35, 0.010, 1.20) // R
                    + bump(phase, 0.37, 0.008, -0.25) // S
                    + bump(phase, 0.60, 0.050, 0.30); // T
                let wander = 0.05 * (2.0 * std::f64::consts::PI * 0.25 * t).sin();
                let noise = (rng.unit() - 0.5) * 0.01;
                (wave + wander + noise) as f32
            })
            .collect()
    }

    #[test]
    fn an_ecg_compresses_more_than_twofold_at_one_microvolt() {
        let samples = synthetic_ecg(250 * 60, 7);
        let resolution = resolution_for_decimals(2);
        assert!((resolution - 1e-3).abs() < 1e-15);
        let (encoding, bytes) = encode(&samples, resolution).unwrap();
        assert_eq!(encoding, Encoding::DeltaVarint);
        let raw = samples.len() * size_of::<f32>();
        let ratio = raw as f64 / bytes.len() as f64;
        println!(
            "ecg_ii, 60 s at 250 Hz, 1 µV: {raw} bytes as f32, {} bytes encoded, ratio {ratio:.2}",
            bytes.len()
        );
        assert!(ratio > 2.0, "compression ratio {ratio:.2}");
        let decoded = decode(encoding, &bytes, samples.len(), resolution).unwrap();
        assert_close(&samples, &decoded, resolution);
    }
}
