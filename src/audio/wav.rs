//! A small RIFF/WAVE reader.
//!
//! Reads integer PCM (8, 16, 24 and 32 bit, also inside wider containers),
//! IEEE float (32 and 64 bit), G.711 A-law / µ-law and the same formats
//! wrapped in `WAVE_FORMAT_EXTENSIBLE`. All channels are mixed down to mono
//! by averaging. Integer samples are scaled to [-1, 1) the way soundfile
//! (libsndfile) does: divided by 2^(bits-1) of the container, 8-bit
//! (unsigned) as `(x - 128) / 128`.
//!
//! Malformed input never panics: every length read from the file is checked
//! against the bytes actually present. A `data` chunk that claims more bytes
//! than the file holds (common for files written by streaming recorders) is
//! read up to the last whole frame present.

use super::{Audio, AudioError};

const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
const WAVE_FORMAT_ALAW: u16 = 0x0006;
const WAVE_FORMAT_MULAW: u16 = 0x0007;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Trailing 14 bytes of the KSDATAFORMAT_SUBTYPE_* GUIDs
/// (`xxxxxxxx-0000-0010-8000-00aa00389b71`, little-endian layout); the first
/// two bytes hold the plain format code.
const SUBTYPE_GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

fn format_name(code: u16) -> &'static str {
    match code {
        0x0001 => "integer PCM",
        0x0002 => "Microsoft ADPCM",
        0x0003 => "IEEE float",
        0x0006 => "A-law",
        0x0007 => "mu-law",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 => "MPEG",
        0x0055 => "MPEG Layer 3",
        0xFFFE => "extensible",
        _ => "unknown",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Unsigned 8-bit integer.
    U8,
    /// Signed little-endian integer of 2, 3 or 4 bytes.
    Int(usize),
    F32,
    F64,
    ALaw,
    MuLaw,
}

struct Format {
    encoding: Encoding,
    channels: usize,
    sample_rate: u32,
    /// Bytes per sample of one channel.
    container: usize,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn malformed(origin: &str, detail: impl Into<String>) -> AudioError {
    AudioError::Malformed {
        origin: origin.to_string(),
        detail: detail.into(),
    }
}

fn unsupported(origin: &str, detail: impl Into<String>) -> AudioError {
    AudioError::Unsupported {
        origin: origin.to_string(),
        detail: detail.into(),
    }
}

fn not_wav(origin: &str, detail: impl Into<String>) -> AudioError {
    AudioError::NotWav {
        origin: origin.to_string(),
        detail: detail.into(),
    }
}

fn parse_fmt(body: &[u8], origin: &str) -> Result<Format, AudioError> {
    // body is at least 16 bytes (checked by the caller).
    let short = || malformed(origin, "truncated fmt chunk");
    let mut code = u16_at(body, 0).ok_or_else(short)?;
    let channels = u16_at(body, 2).ok_or_else(short)? as usize;
    let sample_rate = u32_at(body, 4).ok_or_else(short)?;
    let block_align = u16_at(body, 12).ok_or_else(short)? as usize;
    let bits = u16_at(body, 14).ok_or_else(short)? as usize;

    if code == WAVE_FORMAT_EXTENSIBLE {
        if body.len() < 40 {
            return Err(malformed(
                origin,
                format!(
                    "WAVE_FORMAT_EXTENSIBLE fmt chunk is {} bytes, expected at least 40",
                    body.len()
                ),
            ));
        }
        let guid = &body[24..40];
        if guid[2..] != SUBTYPE_GUID_TAIL {
            let hex: String = guid.iter().map(|b| format!("{b:02x}")).collect();
            return Err(unsupported(
                origin,
                format!("WAVE_FORMAT_EXTENSIBLE with unknown sub-format GUID {hex}"),
            ));
        }
        code = u16::from_le_bytes([guid[0], guid[1]]);
    }

    if channels == 0 {
        return Err(malformed(origin, "fmt chunk declares zero channels"));
    }
    if sample_rate == 0 {
        return Err(malformed(
            origin,
            "fmt chunk declares a sample rate of 0 Hz",
        ));
    }

    let describe = || {
        format!(
            "format code 0x{code:04x} ({}), {bits} bits per sample",
            format_name(code)
        )
    };

    match code {
        WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT | WAVE_FORMAT_ALAW | WAVE_FORMAT_MULAW => {}
        _ => return Err(unsupported(origin, describe())),
    }
    if bits == 0 {
        return Err(malformed(origin, "fmt chunk declares 0 bits per sample"));
    }

    // Bytes each sample occupies: normally ceil(bits / 8); a block_align that
    // is a larger multiple of the channel count means a wider container
    // (e.g. 20-bit samples stored in 3 or 4 bytes).
    let min_container = bits.div_ceil(8);
    let container = if block_align == 0 || block_align == channels * min_container {
        min_container
    } else if block_align.is_multiple_of(channels) && block_align / channels >= min_container {
        block_align / channels
    } else {
        return Err(malformed(
            origin,
            format!(
                "block align {block_align} does not fit {channels} channel(s) of {bits}-bit samples"
            ),
        ));
    };

    let encoding = match code {
        WAVE_FORMAT_PCM => match container {
            1 => Encoding::U8,
            2..=4 => Encoding::Int(container),
            _ => return Err(unsupported(origin, describe())),
        },
        WAVE_FORMAT_IEEE_FLOAT => match (bits, container) {
            (32, 4) => Encoding::F32,
            (64, 8) => Encoding::F64,
            _ => return Err(unsupported(origin, describe())),
        },
        WAVE_FORMAT_ALAW | WAVE_FORMAT_MULAW if bits == 8 && container == 1 => {
            if code == WAVE_FORMAT_ALAW {
                Encoding::ALaw
            } else {
                Encoding::MuLaw
            }
        }
        _ => return Err(unsupported(origin, describe())),
    };

    Ok(Format {
        encoding,
        channels,
        sample_rate,
        container,
    })
}

/// G.711 µ-law byte → 16-bit linear value.
fn mulaw_to_i16(byte: u8) -> i16 {
    let u = !byte;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// G.711 A-law byte → 16-bit linear value.
fn alaw_to_i16(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if a & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

#[inline]
fn decode_sample(enc: Encoding, s: &[u8]) -> f64 {
    match enc {
        Encoding::U8 => (s[0] as f64 - 128.0) / 128.0,
        Encoding::Int(2) => i16::from_le_bytes([s[0], s[1]]) as f64 / 32_768.0,
        Encoding::Int(3) => {
            // Sign-extend 24 bits by placing them in the top of an i32.
            let v = i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8;
            v as f64 / 8_388_608.0
        }
        Encoding::Int(_) => i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f64 / 2_147_483_648.0,
        Encoding::F32 => f32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f64,
        Encoding::F64 => f64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        Encoding::ALaw => alaw_to_i16(s[0]) as f64 / 32_768.0,
        Encoding::MuLaw => mulaw_to_i16(s[0]) as f64 / 32_768.0,
    }
}

/// Parse a WAV file held in memory. `source` names it in error messages.
pub fn read_wav(bytes: &[u8], source: &str) -> Result<Audio, AudioError> {
    if bytes.is_empty() {
        return Err(not_wav(source, "empty file, 0 bytes"));
    }
    let magic = &bytes[..bytes.len().min(4)];
    if magic == b"RIFX" || magic == b"FFIR" {
        return Err(unsupported(
            source,
            "big-endian RIFX WAV files are not supported",
        ));
    }
    if magic == b"RF64" || magic == b"BW64" {
        return Err(unsupported(
            source,
            "RF64/BW64 (64-bit WAV) files are not supported",
        ));
    }
    if !b"RIFF".starts_with(magic) {
        return Err(not_wav(source, "no RIFF header"));
    }
    if bytes.len() < 12 {
        return Err(malformed(
            source,
            format!("truncated RIFF header ({} bytes, need 12)", bytes.len()),
        ));
    }
    if &bytes[8..12] != b"WAVE" {
        let kind = String::from_utf8_lossy(&bytes[8..12]).into_owned();
        return Err(not_wav(
            source,
            format!("RIFF form type is {kind:?}, not \"WAVE\""),
        ));
    }

    let mut fmt: Option<Format> = None;
    let mut data: Option<&[u8]> = None;
    let mut pos = 12usize;
    while data.is_none() || fmt.is_none() {
        let Some(header) = bytes.get(pos..pos.saturating_add(8)) else {
            break;
        };
        let id = [header[0], header[1], header[2], header[3]];
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let start = pos + 8;
        let available = bytes.len() - start;
        match &id {
            b"fmt " => {
                if fmt.is_some() {
                    return Err(malformed(source, "more than one fmt chunk"));
                }
                if size < 16 {
                    return Err(malformed(
                        source,
                        format!("fmt chunk is {size} bytes, expected at least 16"),
                    ));
                }
                if size > available {
                    return Err(malformed(
                        source,
                        format!("truncated fmt chunk ({available} of {size} bytes present)"),
                    ));
                }
                fmt = Some(parse_fmt(&bytes[start..start + size], source)?);
            }
            b"data" => {
                // Tolerate a data chunk longer than the file (streamed or
                // truncated recordings): keep what is there. A size of 0 with
                // bytes after it is a recorder that never finalized its
                // header: as libsndfile does, the rest of the file is the data.
                let size = if size == 0 { available } else { size };
                data = Some(&bytes[start..start + size.min(available)]);
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        pos = match start
            .checked_add(size)
            .and_then(|e| e.checked_add(size & 1))
        {
            Some(next) => next,
            None => break,
        };
    }

    let fmt = fmt.ok_or_else(|| malformed(source, "no fmt chunk"))?;
    let data = data.ok_or_else(|| malformed(source, "no data chunk"))?;

    let frame_bytes = fmt.container * fmt.channels;
    let frames = data.len() / frame_bytes;
    if frames == 0 {
        return Err(AudioError::Empty {
            origin: source.to_string(),
        });
    }

    let mut samples = Vec::with_capacity(frames);
    if fmt.channels == 1 {
        samples.extend(
            data.chunks_exact(fmt.container)
                .map(|s| decode_sample(fmt.encoding, s) as f32),
        );
    } else {
        let inv = 1.0 / fmt.channels as f64;
        for frame in data.chunks_exact(frame_bytes) {
            let sum: f64 = frame
                .chunks_exact(fmt.container)
                .map(|s| decode_sample(fmt.encoding, s))
                .sum();
            samples.push((sum * inv) as f32);
        }
    }

    Ok(Audio {
        samples,
        sample_rate: fmt.sample_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_reference_points() {
        // µ-law: 0xFF and 0x7F are ±0, 0x00 is the most negative value.
        assert_eq!(mulaw_to_i16(0xFF), 0);
        assert_eq!(mulaw_to_i16(0x7F), 0);
        assert_eq!(mulaw_to_i16(0x00), -32124);
        assert_eq!(mulaw_to_i16(0x80), 32124);
        // A-law: 0xD5 is the smallest positive step, 0xAA the largest.
        assert_eq!(alaw_to_i16(0xD5), 8);
        assert_eq!(alaw_to_i16(0x55), -8);
        assert_eq!(alaw_to_i16(0xAA), 32256);
        assert_eq!(alaw_to_i16(0x2A), -32256);
    }

    #[test]
    fn int24_sign_extension() {
        assert_eq!(
            decode_sample(Encoding::Int(3), &[0xFF, 0xFF, 0xFF]),
            -1.0 / 8_388_608.0
        );
        assert_eq!(decode_sample(Encoding::Int(3), &[0x00, 0x00, 0x80]), -1.0);
        assert_eq!(decode_sample(Encoding::U8, &[0]), -1.0);
        assert_eq!(decode_sample(Encoding::U8, &[128]), 0.0);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut header = b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00".to_vec();
        header.extend_from_slice(&[1, 0, 1, 0, 0x80, 0x3E, 0, 0, 0, 0x7D, 0, 0, 2, 0, 16, 0]);
        header.extend_from_slice(b"data\x08\x00\x00\x00\x01\x00\x02\x00\x03\x00\x04\x00");
        for _ in 0..20_000 {
            let mut b = header.clone();
            let n = (next() % 6) as usize;
            for _ in 0..n {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            let cut = (next() as usize) % (b.len() + 1);
            b.truncate(cut);
            let _ = read_wav(&b, "fuzz");
        }
    }
}
