//! Minimal `.npy` reading and writing for little-endian float arrays in C order: enough to exchange
//! inputs and reference outputs with numpy without a Python dependency in the tests.
//!
//! Writes format 1.0 with dtype `<f4`. Reads format 1.0, 2.0 and 3.0 with dtype `<f4` or `<f8`
//! (converted to f32, since numpy defaults to float64); everything else is a clear error.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Why a byte string is not an array this module can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NpyError {
    /// The magic string `\x93NUMPY` is missing.
    NotNpy,
    /// A format version other than 1.0, 2.0 or 3.0.
    UnsupportedVersion(u8, u8),
    /// The header dictionary could not be parsed; the text says what is wrong.
    BadHeader(String),
    /// A dtype other than `<f4` / `<f8`, e.g. `<i8` or big-endian `>f4`.
    UnsupportedDtype(String),
    /// Fortran (column-major) order.
    FortranOrder,
    /// Fewer bytes than the header promises.
    Truncated {
        /// Bytes of data the header's shape and dtype need.
        expected: usize,
        /// Bytes of data after the header.
        actual: usize,
    },
    /// More bytes than the header promises.
    TrailingBytes {
        /// Bytes of data the header's shape and dtype need.
        expected: usize,
        /// Bytes of data after the header.
        actual: usize,
    },
}

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NpyError::NotNpy => write!(f, "not an .npy file (missing the \\x93NUMPY magic)"),
            NpyError::UnsupportedVersion(a, b) => {
                write!(f, "unsupported .npy format version {a}.{b}")
            }
            NpyError::BadHeader(why) => write!(f, "malformed .npy header: {why}"),
            NpyError::UnsupportedDtype(d) => {
                write!(f, "unsupported dtype '{d}' (only little-endian float32 '<f4' and float64 '<f8')")
            }
            NpyError::FortranOrder => write!(f, "Fortran-order arrays are not supported (save with C order)"),
            NpyError::Truncated { expected, actual } => {
                write!(f, "truncated .npy data: expected {expected} bytes of data, found {actual}")
            }
            NpyError::TrailingBytes { expected, actual } => {
                write!(f, ".npy data too long: expected {expected} bytes of data, found {actual}")
            }
        }
    }
}

impl std::error::Error for NpyError {}

/// The `.npy` encoding of an f32 array of `shape` (C order).
pub fn to_npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "npy: shape {shape:?} does not match {} values", data.len());
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // numpy pads with spaces so the data starts 64-byte aligned, and ends the header with '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// Writes an f32 array to `w` as `.npy`.
pub fn write_npy<W: Write>(mut w: W, shape: &[usize], data: &[f32]) -> io::Result<()> {
    w.write_all(&to_npy_bytes(shape, data))
}

/// Writes an f32 array to the file at `path`.
pub fn write_npy_file(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> io::Result<()> {
    std::fs::write(path, to_npy_bytes(shape, data))
}

/// Reads the file at `path`; I/O and format errors both become `io::Error`s naming the path.
pub fn read_npy_file(path: impl AsRef<Path>) -> io::Result<(Vec<usize>, Vec<f32>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)?;
    read_npy(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

/// Parses an `.npy` byte string into (shape, values in C order).
pub fn read_npy(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(NpyError::NotNpy);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match major {
        1 if bytes.len() >= 10 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        1..=3 => return Err(NpyError::BadHeader("file ends inside the header length".into())),
        _ => return Err(NpyError::UnsupportedVersion(major, minor)),
    };
    let header = bytes.get(start..start + header_len).ok_or_else(|| NpyError::BadHeader("file ends inside the header".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| NpyError::BadHeader("header is not text".into()))?;
    let (descr, fortran, shape) = parse_header(header)?;
    if fortran {
        return Err(NpyError::FortranOrder);
    }
    let width = match descr.as_str() {
        "<f4" => 4,
        "<f8" => 8,
        _ => return Err(NpyError::UnsupportedDtype(descr)),
    };
    let data = &bytes[start + header_len..];
    let expected = shape.iter().product::<usize>() * width;
    if data.len() < expected {
        return Err(NpyError::Truncated { expected, actual: data.len() });
    }
    if data.len() > expected {
        return Err(NpyError::TrailingBytes { expected, actual: data.len() });
    }
    let values = if width == 4 {
        data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    } else {
        data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect()
    };
    Ok((shape, values))
}

/// Extracts (descr, fortran_order, shape) from the header's Python dict literal.
fn parse_header(header: &str) -> Result<(String, bool, Vec<usize>), NpyError> {
    let descr = value_after(header, "descr")?;
    let descr = descr.strip_prefix('\'').and_then(|d| d.split('\'').next()).ok_or_else(|| NpyError::BadHeader(format!("descr is not a string: {descr}")))?;
    let fortran = match value_after(header, "fortran_order")? {
        v if v.starts_with("False") => false,
        v if v.starts_with("True") => true,
        v => return Err(NpyError::BadHeader(format!("fortran_order is not a bool: {v}"))),
    };
    let shape = value_after(header, "shape")?;
    let inner = shape.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or_else(|| NpyError::BadHeader(format!("shape is not a tuple: {shape}")))?;
    let dims =
        inner.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.parse().map_err(|_| NpyError::BadHeader(format!("bad dimension '{d}'")))).collect::<Result<_, _>>()?;
    Ok((descr.to_string(), fortran, dims))
}

/// The text following `'key':` in the header dict.
fn value_after<'a>(header: &'a str, key: &str) -> Result<&'a str, NpyError> {
    let quoted = format!("'{key}'");
    let at = header.find(&quoted).ok_or_else(|| NpyError::BadHeader(format!("no '{key}' key")))?;
    let rest = header[at + quoted.len()..].trim_start();
    let rest = rest.strip_prefix(':').ok_or_else(|| NpyError::BadHeader(format!("no ':' after '{key}'")))?;
    Ok(rest.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header of a numpy-written file, with `descr`/`order`/`shape` substituted and correct length.
    fn with_header(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn round_trips() {
        for shape in [vec![2, 3], vec![5], vec![], vec![1, 3, 2, 2], vec![0, 4]] {
            let data: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes = to_npy_bytes(&shape, &data);
            assert_eq!(bytes.len() % 64, (data.len() * 4) % 64, "data 64-byte aligned");
            assert_eq!(read_npy(&bytes).unwrap(), (shape, data));
        }
    }

    #[test]
    fn header_matches_numpy() {
        let bytes = to_npy_bytes(&[2], &[1.0, 2.0]);
        let header = std::str::from_utf8(&bytes[10..bytes.len() - 8]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"));
        assert!(header.ends_with(" \n"));
    }

    #[test]
    fn reads_f64_as_f32() {
        let data: Vec<u8> = [1.5f64, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", &data);
        assert_eq!(read_npy(&bytes).unwrap(), (vec![2], vec![1.5, -2.0]));
    }

    #[test]
    fn reports_errors() {
        assert_eq!(read_npy(b"PK\x03\x04 not numpy"), Err(NpyError::NotNpy));
        let i64s = with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", &[0; 8]);
        assert_eq!(read_npy(&i64s), Err(NpyError::UnsupportedDtype("<i8".into())));
        assert!(read_npy(&i64s).unwrap_err().to_string().contains("'<i8'"));
        let fortran = with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 1), }", &[0; 4]);
        assert_eq!(read_npy(&fortran), Err(NpyError::FortranOrder));
        let full = to_npy_bytes(&[2, 2], &[1.0; 4]);
        assert_eq!(read_npy(&full[..full.len() - 3]), Err(NpyError::Truncated { expected: 16, actual: 13 }));
        let mut long = full.clone();
        long.push(0);
        assert_eq!(read_npy(&long), Err(NpyError::TrailingBytes { expected: 16, actual: 17 }));
        assert!(matches!(read_npy(&full[..40]), Err(NpyError::BadHeader(_))));
        let mut v9 = full;
        v9[6] = 9;
        assert_eq!(read_npy(&v9), Err(NpyError::UnsupportedVersion(9, 0)));
        let bad_shape = with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }", &[]);
        assert!(matches!(read_npy(&bad_shape), Err(NpyError::BadHeader(m)) if m.contains("'a'")));
    }
}
