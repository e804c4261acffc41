//! Arbitrary bytes as an ONNX file: compiling must return `Ok` or `Err`, never panic, abort,
//! hang or allocate without bound (libFuzzer's -rss_limit_mb and -timeout catch the last two).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mfn_compiler::compile(data, &Default::default());
});
