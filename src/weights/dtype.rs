//! Element types of stored tensors and their conversion to `f32`.

/// A stored element type that converts to `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The safetensors dtype string, if it is one we convert.
    pub(crate) fn from_safetensors(s: &str) -> Option<DType> {
        Some(match s {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "F64" => DType::F64,
            "I64" => DType::I64,
            "I32" => DType::I32,
            "I16" => DType::I16,
            "I8" => DType::I8,
            "U8" => DType::U8,
            "BOOL" => DType::Bool,
            _ => return None,
        })
    }

    /// The torch storage class (`torch.FloatStorage`, ...), if it is one we convert.
    pub(crate) fn from_torch_storage(name: &str) -> Option<DType> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "DoubleStorage" => DType::F64,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" | "UntypedStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    /// Decodes one element; `bytes` must hold exactly [`DType::size`] bytes.
    #[inline]
    pub(crate) fn decode(self, bytes: &[u8], big_endian: bool) -> f32 {
        match self {
            DType::F32 => f32::from_bits(u32::from_ne_bytes(order(bytes, big_endian))),
            DType::F16 => {
                half::f16::from_bits(u16::from_ne_bytes(order(bytes, big_endian))).to_f32()
            }
            DType::BF16 => {
                half::bf16::from_bits(u16::from_ne_bytes(order(bytes, big_endian))).to_f32()
            }
            DType::F64 => f64::from_bits(u64::from_ne_bytes(order(bytes, big_endian))) as f32,
            DType::I64 => i64::from_ne_bytes(order(bytes, big_endian)) as f32,
            DType::I32 => i32::from_ne_bytes(order(bytes, big_endian)) as f32,
            DType::I16 => i16::from_ne_bytes(order(bytes, big_endian)) as f32,
            DType::I8 => i8::from_ne_bytes(order(bytes, big_endian)) as f32,
            DType::U8 => f32::from(bytes.first().copied().unwrap_or(0)),
            DType::Bool => f32::from(u8::from(bytes.first().copied().unwrap_or(0) != 0)),
        }
    }

    /// Appends every element of `bytes` (a whole number of elements) to `out`.
    pub(crate) fn decode_all(self, bytes: &[u8], big_endian: bool, out: &mut Vec<f32>) {
        let size = self.size();
        out.reserve(bytes.len() / size);
        out.extend(bytes.chunks_exact(size).map(|c| self.decode(c, big_endian)));
    }
}

/// Copies a stored element into native byte order (missing bytes read as zero).
#[inline]
fn order<const N: usize>(bytes: &[u8], big_endian: bool) -> [u8; N] {
    let mut a = [0u8; N];
    for (d, s) in a.iter_mut().zip(bytes) {
        *d = *s;
    }
    if big_endian == cfg!(target_endian = "little") {
        a.reverse();
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_dtype() {
        let mut out = Vec::new();
        DType::F32.decode_all(&1.5f32.to_le_bytes(), false, &mut out);
        DType::F32.decode_all(&(-2.0f32).to_be_bytes(), true, &mut out);
        DType::F16.decode_all(&half::f16::from_f32(0.25).to_le_bytes(), false, &mut out);
        DType::BF16.decode_all(&half::bf16::from_f32(3.0).to_le_bytes(), false, &mut out);
        DType::F64.decode_all(&0.125f64.to_le_bytes(), false, &mut out);
        DType::I64.decode_all(&(-7i64).to_le_bytes(), false, &mut out);
        DType::I32.decode_all(&9i32.to_be_bytes(), true, &mut out);
        DType::U8.decode_all(&[200], false, &mut out);
        DType::Bool.decode_all(&[0, 3], false, &mut out);
        assert_eq!(
            out,
            vec![1.5, -2.0, 0.25, 3.0, 0.125, -7.0, 9.0, 200.0, 0.0, 1.0]
        );
    }
}
