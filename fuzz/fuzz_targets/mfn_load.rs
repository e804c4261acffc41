//! Bytes as a `.mfn` file: `Program::from_mfn` must return `Ok` or `Err`, never panic or allocate
//! without bound; a program that loads must write back to bytes that load again.
//!
//! An input that does not start with the magic is taken as a payload and given a valid header
//! (magic, version, length, CRC-32), so that most inputs get past the checksum into the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mfn_compiler::format::{MAGIC, VERSION};
use mfn_compiler::Program;

fuzz_target!(|data: &[u8]| {
    let file = if data.starts_with(MAGIC) { data.to_vec() } else { sealed(data) };
    if let Ok(program) = Program::from_mfn(&file) {
        Program::from_mfn(&program.to_mfn()).expect("a program written by to_mfn loads");
    }
});

fn sealed(payload: &[u8]) -> Vec<u8> {
    let mut file = MAGIC.to_vec();
    file.extend_from_slice(&VERSION.to_le_bytes());
    file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    file.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    file.extend_from_slice(payload);
    file
}
