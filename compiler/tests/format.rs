//! The `.mfn` file: a program survives the round trip bit for bit, and every damaged file is
//! rejected with a clear error, never a panic.

use mfn_compiler::format::FormatError;
use mfn_compiler::Program;
use mfn_models::{mobilefacenet, Variant};
use onnx_protobuf::Message;

fn program() -> Program {
    let onnx = mobilefacenet(Variant::S, 7).write_to_bytes().expect("model serialises");
    mfn_compiler::compile(&onnx, &Default::default()).expect("compiles")
}

#[test]
fn round_trip_is_exact() {
    let p = program();
    let bytes = p.to_mfn();
    assert_eq!(Program::from_mfn(&bytes).expect("reads back"), p);
}

#[test]
fn damage_is_detected() {
    let bytes = program().to_mfn();
    assert_eq!(Program::from_mfn(b"hello"), Err(FormatError::NotMfn));
    assert_eq!(Program::from_mfn(&[]), Err(FormatError::NotMfn));
    let mut other = bytes.clone();
    other[8] = 99;
    assert_eq!(Program::from_mfn(&other), Err(FormatError::Version { found: 99 }));
    for cut in [9, 23, 24, 1000, bytes.len() / 2, bytes.len() - 1] {
        let err = Program::from_mfn(&bytes[..cut]).expect_err("truncated");
        assert!(matches!(err, FormatError::Truncated { .. }), "cut at {cut}: {err}");
    }
    for at in [24, 100, bytes.len() / 3, bytes.len() - 1] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x40;
        assert!(matches!(Program::from_mfn(&flipped), Err(FormatError::Checksum { .. })), "flip at {at}");
    }
}

/// A payload with a valid checksum but nonsense inside (as a hostile file would have).
#[test]
fn hostile_payloads_are_malformed_not_panics() {
    let bytes = program().to_mfn();
    let reseal = |mut b: Vec<u8>| {
        let crc = crc32fast::hash(&b[24..]);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
        b
    };
    // A kernel count of 2^60 must not allocate.
    let mut huge = bytes.clone();
    huge[24..32].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(Program::from_mfn(&reseal(huge)), Err(FormatError::Malformed(_))));
    let mut rng = 0x9E3779B97F4A7C15u64;
    for _ in 0..500 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut b = bytes.clone();
        let at = 24 + (rng as usize) % (b.len() - 24);
        b[at] = (rng >> 32) as u8;
        let _ = Program::from_mfn(&reseal(b));
    }
}

/// Found by the `mfn_load` fuzzer: a header claiming a payload of 2^64 - 2 bytes overflowed the
/// expected length in the error (a panic with overflow checks on).
#[test]
fn fuzz_regression_payload_length_near_u64_max() {
    // The fuzzer's file (format version 1), with the version patched to the current one.
    let mut file = b"MFNPROG\0\x01\0\0\0\xfe\xff\xff\xff\xff\xff\xff\xff\x96\x91\x29\x9c".to_vec();
    file[8..12].copy_from_slice(&mfn_compiler::format::VERSION.to_le_bytes());
    assert_eq!(Program::from_mfn(&file), Err(FormatError::Truncated { expected: u64::MAX, actual: 24 }));
}

/// Found by the `mfn_load` fuzzer: a port whose shape's product overflows usize panicked in the
/// loader's cross-check (with overflow checks on) instead of being refused.
#[test]
fn fuzz_regression_port_shape_overflowing_usize() {
    let mut p = program();
    p.input.shape = vec![usize::MAX, 2, 3];
    match Program::from_mfn(&p.to_mfn()) {
        Err(FormatError::Malformed(m)) => assert!(m.contains("port 'input' does not fit its buffer"), "{m}"),
        other => panic!("expected a malformed file, got {other:?}"),
    }
}

/// A step must bind a texture weight exactly where its kernel declares a texture: anything else
/// would fail inside the driver (or read garbage), so the file is refused when it is read.
#[test]
fn texture_bindings_are_checked() {
    let p = program();
    let (step, binding) = p
        .steps
        .iter()
        .enumerate()
        .find_map(|(i, s)| (0..s.bindings.len()).find(|&j| p.kernels[s.kernel].is_texture(j)).map(|j| (i, j)))
        .expect("the vec4 pointwise kernels read their weights from a texture");
    let mfn_compiler::Resource::Weight(w) = p.steps[step].bindings[binding] else { panic!("a texture binding binds a weight") };
    let malformed = |p: &Program| match Program::from_mfn(&p.to_mfn()) {
        Err(FormatError::Malformed(m)) => m,
        other => panic!("expected a malformed file, got {other:?}"),
    };
    let mut buffer = p.clone();
    buffer.weights[w].texture = None;
    let m = malformed(&buffer);
    assert!(m.contains(&format!("step {step}: binding {binding}")) && m.contains("is a texture"), "{m}");
    let mut ragged = p.clone();
    ragged.weights[w].data.pop();
    let m = malformed(&ragged);
    assert!(m.contains(&ragged.weights[w].name) && m.contains("whole rows"), "{m}");
    let mut texture = p.clone();
    let plain = texture.steps[step].bindings.iter().position(|r| matches!(r, mfn_compiler::Resource::Weight(v) if texture.weights[*v].texture.is_none()));
    let Some(mfn_compiler::Resource::Weight(v)) = plain.map(|j| texture.steps[step].bindings[j]) else { panic!("the step also binds per-channel parameters") };
    let params = &mut texture.weights[v];
    params.texture = Some(1);
    params.data.resize(params.data.len().div_ceil(4) * 4, 0.0);
    assert!(malformed(&texture).contains("is a buffer, the step binds a texture"));
}
