//! Wide loads: a kernel's activations read as 64-bit integers and bitcast back, for CPU drivers
//! whose storage-buffer loads cost by the component.
//!
//! Lavapipe runs a subgroup's invocations as the lanes of AVX registers, and a storage-buffer load
//! there is a loop over the lanes with a bounds check and an insert for every component (docs/performance.md,
//! "What bounds a kernel on lavapipe"). The same 16 bytes read as a `vec2<u64>` are 2 components a
//! lane instead of 4. A template reads its activations through the types and functions of its
//! block between `// mfn:loads` and `// mfn:end-loads`:
//!
//! - `packed4` and `unpack4`: 4 stored elements (`vec4<stored>`), as a `vec4<f32>`; `pack4`, where
//!   the block has it, the other way, for stores;
//! - `packed8`, `unpack8` and `pack8`: 8 stored elements (`mat2x4<stored>`, two of `packed4`), as a
//!   `mat2x4<f32>`, for a block that also has `packed4`, `unpack4` and `pack4`;
//! - `packed2` and `unpack2`: 2 stored elements (`vec2<stored>`), as a `vec2<f32>` (the depthwise
//!   3x3 kernel's input pairs on rows of any width);
//! - `x_first` and `x_last`, for a block that also has `packed4` and a kernel whose binding `x` is
//!   an `array<packed4>`: the first and the last element of `x[i]` alone, one component (the
//!   depthwise 3x3 kernel's columns left and right of an invocation's outputs).
//!
//! As written, the block declares them as the stored vectors themselves. [`wide_loads`] replaces
//! it with the same elements as integers of the same size: 8 f32 as `vec4<u64>`, 4 f32 or 8 f16
//! as `vec2<u64>`, 2 f32 or 4 f16 as `u64`, 2 f16 as `u32` (f16 through
//! `pack2x16float`/`unpack2x16float`). The bits are the same,
//! so are the results. The wide form needs `SHADER_INT64`. The runtime uses it on CPU adapters
//! that have it (`SessionOptions::wide_loads`).
//!
//! Measured on lavapipe (the pretrained model at batch 1, pairs of runs in one process): the
//! subgroup GEMM's input and residual loads as `vec2<u64>` took 0.945 to 0.966 of the time, its
//! stores as well a further 0.984 to 0.995; the depthwise 3x3 kernel for rows of vec4s, its loads
//! and stores, 0.981; the one for rows of any width, its input pairs as `u64`, 0.99 (0.96 to
//! 0.99 at batch 16).

use crate::program::Precision;

const BEGIN: &str = "// mfn:loads\n";
const END: &str = "// mfn:end-loads\n";

/// The wide form of kernel source `wgsl` (a specialised template) for activations stored in
/// `precision`: its block of loads with the 64-bit types. `None` where the kernel has no such
/// block.
pub fn wide_loads(wgsl: &str, precision: Precision) -> Option<String> {
    let begin = wgsl.find(BEGIN)?;
    let end = begin + wgsl[begin..].find(END)?;
    let block = &wgsl[begin + BEGIN.len()..end];
    let mut out = String::with_capacity(wgsl.len() + 256);
    out.push_str(&wgsl[..begin]);
    out.push_str("// mfn:loads (wide: 64-bit components, mfn_compiler::wide)\n");
    let (word8, word4, word2) = match precision {
        Precision::F32 => ("vec4<u64>", "vec2<u64>", "u64"),
        Precision::F16 => ("vec2<u64>", "u64", "u32"),
    };
    if block.contains("alias packed4") {
        out.push_str(&format!("alias packed4 = {word4};\n"));
        out.push_str(match precision {
            Precision::F32 => "fn unpack4(v: packed4) -> vec4<f32> {\n    return bitcast<vec4<f32>>(vec4(u32(v.x), u32(v.x >> 32u), u32(v.y), u32(v.y >> 32u)));\n}\n",
            Precision::F16 => "fn unpack4(v: packed4) -> vec4<f32> {\n    return vec4(unpack2x16float(u32(v)), unpack2x16float(u32(v >> 32u)));\n}\n",
        });
        if block.contains("fn pack4") {
            out.push_str(match precision {
                Precision::F32 => {
                    "fn pack4(v: vec4<f32>) -> packed4 {\n    let u = vec4<u64>(bitcast<vec4<u32>>(v));\n    return vec2(u.x | (u.y << 32u), u.z | (u.w << 32u));\n}\n"
                }
                Precision::F16 => "fn pack4(v: vec4<f32>) -> packed4 {\n    return u64(pack2x16float(v.xy)) | (u64(pack2x16float(v.zw)) << 32u);\n}\n",
            });
        }
    }
    if block.contains("alias packed8") {
        // Two of packed4, through its functions.
        let (lo, hi) = match precision {
            Precision::F32 => ("v.xy", "v.zw"),
            Precision::F16 => ("v.x", "v.y"),
        };
        out.push_str(&format!("alias packed8 = {word8};\n"));
        out.push_str(&format!("fn unpack8(v: packed8) -> mat2x4<f32> {{\n    return mat2x4(unpack4({lo}), unpack4({hi}));\n}}\n"));
        out.push_str("fn pack8(v: mat2x4<f32>) -> packed8 {\n    return packed8(pack4(v[0]), pack4(v[1]));\n}\n");
    }
    if block.contains("fn x_first") {
        // The 64-bit component that holds the element, and the element's half of it.
        out.push_str(match precision {
            Precision::F32 => {
                "fn x_first(i: u32) -> f32 {\n    return bitcast<f32>(u32(x[i].x));\n}\nfn x_last(i: u32) -> f32 {\n    return bitcast<f32>(u32(x[i].y >> 32u));\n}\n"
            }
            Precision::F16 => {
                "fn x_first(i: u32) -> f32 {\n    return unpack2x16float(u32(x[i])).x;\n}\nfn x_last(i: u32) -> f32 {\n    return unpack2x16float(u32(x[i] >> 32u)).y;\n}\n"
            }
        });
    }
    if block.contains("alias packed2") {
        out.push_str(&format!("alias packed2 = {word2};\n"));
        out.push_str(match precision {
            Precision::F32 => "fn unpack2(v: packed2) -> vec2<f32> {\n    return bitcast<vec2<f32>>(vec2(u32(v), u32(v >> 32u)));\n}\n",
            Precision::F16 => "fn unpack2(v: packed2) -> vec2<f32> {\n    return unpack2x16float(v);\n}\n",
        });
    }
    out.push_str(END);
    out.push_str(&wgsl[end + END.len()..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: &str =
        "alias stored = f32;\n// mfn:loads\nalias packed4 = vec4<stored>;\nfn unpack4(v: packed4) -> vec4<f32> {\n    return vec4<f32>(v);\n}\n// mfn:end-loads\nfn main() {}\n";

    #[test]
    fn replaces_only_the_block() {
        let wide = wide_loads(KERNEL, Precision::F32).unwrap();
        assert!(wide.starts_with("alias stored = f32;\n// mfn:loads (wide"));
        assert!(wide.contains("alias packed4 = vec2<u64>;"));
        assert!(!wide.contains("packed2") && !wide.contains("fn pack4"), "declares only what the block declared");
        let with_stores = KERNEL.replace("// mfn:end-loads", "fn pack4(v: vec4<f32>) -> packed4 {\n    return packed4(v);\n}\n// mfn:end-loads");
        assert!(wide_loads(&with_stores, Precision::F16).unwrap().contains("fn pack4(v: vec4<f32>) -> packed4 {\n    return u64(pack2x16float"));
        assert!(wide.ends_with("// mfn:end-loads\nfn main() {}\n"));
        assert!(wide_loads(&KERNEL.replace("vec4", "vec2").replace("4", "2"), Precision::F16).unwrap().contains("alias packed2 = u32;"));
        let pairs = with_stores.replace("// mfn:end-loads", "alias packed8 = mat2x4<stored>;\n// mfn:end-loads");
        assert!(wide_loads(&pairs, Precision::F32)
            .unwrap()
            .contains("alias packed8 = vec4<u64>;\nfn unpack8(v: packed8) -> mat2x4<f32> {\n    return mat2x4(unpack4(v.xy), unpack4(v.zw));"));
        assert!(wide_loads(&pairs, Precision::F16)
            .unwrap()
            .contains("alias packed8 = vec2<u64>;\nfn unpack8(v: packed8) -> mat2x4<f32> {\n    return mat2x4(unpack4(v.x), unpack4(v.y));"));
    }

    #[test]
    fn reads_one_element_alone() {
        let block = KERNEL.replace("// mfn:end-loads", "fn x_first(i: u32) -> f32 {\n    return f32(x[i].x);\n}\n// mfn:end-loads");
        let f32 = wide_loads(&block, Precision::F32).unwrap();
        assert!(f32.contains("return bitcast<f32>(u32(x[i].x));") && f32.contains("return bitcast<f32>(u32(x[i].y >> 32u));"), "the u64 holding element 0, element 3: {f32}");
        let f16 = wide_loads(&block, Precision::F16).unwrap();
        assert!(f16.contains("return unpack2x16float(u32(x[i])).x;") && f16.contains("return unpack2x16float(u32(x[i] >> 32u)).y;"), "{f16}");
    }

    #[test]
    fn kernels_without_the_block_have_no_wide_form() {
        assert_eq!(wide_loads("fn main() {}\n", Precision::F32), None);
        assert_eq!(wide_loads("// mfn:loads\nalias packed4 = vec4<f32>;\n", Precision::F32), None, "an unterminated block");
    }
}
