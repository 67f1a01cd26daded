//! A bounds-checked walk over a GGUF header before any parser allocates from it. Every count and
//! length the header states is checked against the bytes left in the file, so no value in a
//! corrupt or hostile file can make a reader allocate more than the file holds (a string "of
//! 2^60 bytes" or an array "of 2^40 elements" in a 10 MB file is an error, not an abort), and
//! every tensor's dimensions are checked for zero, overflow and plausibility.

use std::io::Read;

/// The most dimensions a GGML tensor has.
const MAX_DIMS: u32 = 4;
/// Nested arrays deeper than this are refused (real files nest at most once).
const MAX_DEPTH: u32 = 4;
/// No quantized format stores more than this many values per byte (the densest, IQ1, stores
/// about five); a tensor claiming more values than this times the file's size is corrupt.
const MAX_VALUES_PER_BYTE: u64 = 8;

/// What the walk found: where tensor data starts is computed by the parser itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    pub tensors: u64,
    pub metadata: u64,
}

/// Reads with a running offset and the file length, refusing reads past the end.
struct Cursor<R> {
    r: R,
    at: u64,
    len: u64,
}

impl<R: Read> Cursor<R> {
    fn left(&self) -> u64 {
        self.len.saturating_sub(self.at)
    }

    fn need(&self, n: u64, what: &str) -> Result<(), String> {
        if n > self.left() {
            return Err(format!(
                "{what} needs {n} bytes at byte {} but only {} are left (truncated or corrupt)",
                self.at,
                self.left()
            ));
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        self.need(N as u64, what)?;
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|e| format!("cannot read {what} at byte {}: {e}", self.at))?;
        self.at += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.bytes::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.bytes::<8>(what).map(u64::from_le_bytes)
    }

    /// Skips `n` bytes (already checked to exist).
    fn skip(&mut self, n: u64, what: &str) -> Result<(), String> {
        self.need(n, what)?;
        let copied = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())
            .map_err(|e| format!("cannot read {what} at byte {}: {e}", self.at))?;
        if copied != n {
            return Err(format!("{what} at byte {} is cut short", self.at));
        }
        self.at += n;
        Ok(())
    }

    /// A GGUF string: u64 length, then that many bytes (returned when short enough to be a key).
    fn string(&mut self, what: &str, keep: bool) -> Result<Option<String>, String> {
        let n = self.u64(what)?;
        self.need(n, what)?;
        if keep && n <= 64 * 1024 {
            let mut b = vec![0u8; n as usize];
            self.r
                .read_exact(&mut b)
                .map_err(|e| format!("cannot read {what} at byte {}: {e}", self.at))?;
            self.at += n;
            return Ok(Some(String::from_utf8_lossy(&b).into_owned()));
        }
        self.skip(n, what)?;
        Ok(None)
    }
}

/// Size in bytes of a fixed-size GGUF value type, None for strings and arrays, Err for unknown.
fn fixed_size(t: u32) -> Result<Option<u64>, String> {
    Ok(match t {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        8 | 9 => None,
        other => return Err(format!("unknown metadata value type {other}")),
    })
}

fn value<R: Read>(c: &mut Cursor<R>, t: u32, key: &str, depth: u32) -> Result<(), String> {
    match fixed_size(t)? {
        Some(n) => c.skip(n, key),
        None if t == 8 => c.string(key, false).map(|_| ()),
        None => {
            if depth >= MAX_DEPTH {
                return Err(format!(
                    "metadata {key}: arrays nested deeper than {MAX_DEPTH}"
                ));
            }
            let et = c.u32(key)?;
            let n = c.u64(key)?;
            match fixed_size(et)? {
                Some(sz) => {
                    let total = n.checked_mul(sz).ok_or_else(|| {
                        format!("metadata {key}: an array of {n} values overflows")
                    })?;
                    c.skip(total, key)
                }
                None => {
                    // Every string or array element takes at least 8 bytes.
                    if n > c.left() / 8 {
                        return Err(format!(
                            "metadata {key}: an array of {n} entries cannot fit in the {} bytes \
                             left",
                            c.left()
                        ));
                    }
                    for _ in 0..n {
                        value(c, et, key, depth + 1)?;
                    }
                    Ok(())
                }
            }
        }
    }
}

/// Walks the header of a GGUF file of `len` bytes from `r` (positioned at its start).
pub fn scan(r: impl Read, len: u64) -> Result<Scan, String> {
    let mut c = Cursor { r, at: 0, len };
    let magic = c.bytes::<4>("the magic bytes")?;
    if &magic != b"GGUF" {
        return Err("missing the GGUF magic bytes (not a GGUF file)".into());
    }
    let version = c.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(format!("unsupported GGUF version {version} (2 and 3 are)"));
    }
    let tensors = c.u64("the tensor count")?;
    let metadata = c.u64("the metadata count")?;
    // The smallest metadata entry is 13 bytes, the smallest tensor entry 8 + 4 + 8 + 4 + 8.
    if metadata > len / 13 || tensors > len / 32 {
        return Err(format!(
            "the header claims {metadata} metadata entries and {tensors} tensors, more than a \
             {len}-byte file can hold"
        ));
    }
    for i in 0..metadata {
        let key = c
            .string(&format!("metadata key {i}"), true)?
            .unwrap_or_else(|| format!("#{i}"));
        let t = c.u32(&key)?;
        value(&mut c, t, &key, 0)?;
    }
    for i in 0..tensors {
        let name = c
            .string(&format!("tensor name {i}"), true)?
            .unwrap_or_else(|| format!("#{i}"));
        let dims = c.u32(&name)?;
        if dims == 0 || dims > MAX_DIMS {
            return Err(format!(
                "tensor {name} has {dims} dimensions (1 to {MAX_DIMS} are possible)"
            ));
        }
        let mut count: u64 = 1;
        for _ in 0..dims {
            let d = c.u64(&name)?;
            if d == 0 {
                return Err(format!("tensor {name} has a dimension of 0"));
            }
            count = count
                .checked_mul(d)
                .filter(|&n| n <= len.saturating_mul(MAX_VALUES_PER_BYTE))
                .ok_or_else(|| {
                    format!(
                        "tensor {name} claims more values than a {len}-byte file can hold \
                         (a dimension of {d})"
                    )
                })?;
        }
        let _dtype = c.u32(&name)?;
        let offset = c.u64(&name)?;
        if offset > len {
            return Err(format!(
                "tensor {name} starts at offset {offset}, past the end of the {len}-byte file"
            ));
        }
    }
    Ok(Scan { tensors, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tensors: u64, kv: u64) -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend(3u32.to_le_bytes());
        v.extend(tensors.to_le_bytes());
        v.extend(kv.to_le_bytes());
        v
    }

    fn string(v: &mut Vec<u8>, s: &str) {
        v.extend((s.len() as u64).to_le_bytes());
        v.extend(s.as_bytes());
    }

    #[test]
    fn huge_lengths_and_counts_are_refused_before_any_allocation() {
        // A key "of 2^60 bytes".
        let mut v = header(0, 1);
        v.extend((1u64 << 60).to_le_bytes());
        v.resize(4096, 0);
        let e = scan(&v[..], v.len() as u64).unwrap_err();
        assert!(e.contains("truncated or corrupt"), "{e}");
        // An array of 2^40 u32 values.
        let mut v = header(0, 1);
        string(&mut v, "k");
        v.extend(9u32.to_le_bytes());
        v.extend(4u32.to_le_bytes());
        v.extend((1u64 << 40).to_le_bytes());
        v.resize(4096, 0);
        assert!(scan(&v[..], v.len() as u64).is_err());
        // 2^32 x 2^32 dimensions, and 2^60.
        for dims in [vec![1u64 << 32, 1 << 32], vec![1 << 60]] {
            let mut v = header(1, 0);
            string(&mut v, "t");
            v.extend((dims.len() as u32).to_le_bytes());
            for d in &dims {
                v.extend(d.to_le_bytes());
            }
            v.extend(0u32.to_le_bytes());
            v.extend(0u64.to_le_bytes());
            v.resize(4096, 0);
            let e = scan(&v[..], v.len() as u64).unwrap_err();
            assert!(e.contains("more values"), "{e}");
        }
        assert!(scan(&header(u64::MAX, 0)[..], 24).is_err());
    }

    #[test]
    fn a_small_valid_header_passes() {
        let mut v = header(1, 1);
        string(&mut v, "general.architecture");
        v.extend(8u32.to_le_bytes());
        string(&mut v, "llama");
        string(&mut v, "w");
        v.extend(2u32.to_le_bytes());
        v.extend(4u64.to_le_bytes());
        v.extend(8u64.to_le_bytes());
        v.extend(0u32.to_le_bytes());
        v.extend(0u64.to_le_bytes());
        v.resize(v.len() + 128, 0);
        assert_eq!(
            scan(&v[..], v.len() as u64).unwrap(),
            Scan {
                tensors: 1,
                metadata: 1
            }
        );
    }
}
