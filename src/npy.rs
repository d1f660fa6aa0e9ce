//! Minimal NumPy `.npy` reading and writing (little-endian, C order) for
//! `sewd forward --out` and the test fixtures.

use std::fmt::Write as _;

/// An array read from a `.npy` file, converted to f32.
#[derive(Debug, Clone)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Serializes a float32 array.
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let mut dims = String::new();
    for d in shape {
        let _ = write!(dims, "{d}, ");
    }
    if shape.len() > 1 {
        dims.truncate(dims.len() - 2);
    } else if shape.len() == 1 {
        dims.truncate(dims.len() - 1);
    }
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Pad so the data starts on a 64-byte boundary, header ends with '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Parses a `.npy` file holding `<f4`, `<f8`, `<i8`, `<i4` or `|b1` data in C order.
pub fn from_bytes(bytes: &[u8]) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated .npy header")?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        Some(header[at..].trim_start_matches([':', ' ']))
    };
    let descr = field("descr").and_then(|s| s.strip_prefix('\'')).and_then(|s| s.split('\'').next()).ok_or("no descr")?;
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
        return Err("Fortran-order arrays are not supported".into());
    }
    let shape_text = field("shape").and_then(|s| s.strip_prefix('(')).and_then(|s| s.split(')').next()).ok_or("no shape")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape entry {s:?}")))
        .collect::<Result<_, _>>()?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape overflows")?;
    let body = &bytes[start + header_len..];
    let width = match descr {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "|b1" | "|u1" => 1,
        other => return Err(format!("unsupported dtype {other}")),
    };
    if body.len() < count.checked_mul(width).ok_or("shape overflows")? {
        return Err(format!("truncated .npy data: {} bytes for {count} values", body.len()));
    }
    let chunks = body.chunks_exact(width).take(count);
    let data: Vec<f32> = match descr {
        "<f4" => chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        "<i4" => chunks.map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
        "<f8" => chunks.map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
        "<i8" => chunks.map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
        _ => chunks.map(|c| c[0] as f32).collect(),
    };
    Ok(NpyArray { shape, data })
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        for shape in [vec![], vec![3], vec![2, 3], vec![1, 2, 2]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes = super::to_bytes(&shape, &data);
            assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
            let back = super::from_bytes(&bytes).unwrap();
            assert_eq!(back.shape, shape);
            assert_eq!(back.data, data);
        }
        assert!(super::from_bytes(b"garbage").is_err());
    }
}
