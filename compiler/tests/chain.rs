//! Chains composed from the generated MobileFaceNet's kernels are valid WGSL (naga), whatever
//! their length: every module-scope name of a link renamed, no member or swizzle touched, the
//! bindings moved past the previous links', the entry points made functions. The GPU test
//! `chains_change_no_result` (tests/kernel_parity/session_options.rs) checks what they compute.

use mfn_compiler::chain::{binding_bases, chain, link_name, Link};
use mfn_compiler::codegen::template;
use onnx_protobuf::Message;

/// The subgroup variants (where a kernel has one) of the steps that can share their tiles, in
/// dispatch order.
fn sharing_links(program: &mfn_compiler::Program) -> Vec<Link<'_>> {
    program
        .steps
        .iter()
        .map(|s| &program.kernels[s.kernel])
        .filter(|k| k.shares_tiles(true))
        .map(|k| Link { wgsl: k.subgroup_wgsl.as_deref().unwrap_or(&k.wgsl), bindings: k.bindings + 1, textures: k.textures, read_write: 1 })
        .collect()
}

#[test]
fn chains_of_the_generated_model_are_valid_wgsl() {
    let onnx = mfn_models::mobilefacenet(mfn_models::Variant::Mfn112x112, 2024).write_to_bytes().expect("model serialises");
    let program = mfn_compiler::compile(&onnx, &Default::default()).expect("compiles");
    let links = sharing_links(&program);
    assert!(links.len() >= 20, "{} kernels that share their tiles", links.len());
    for length in [2, 3, 5] {
        for window in links.windows(length).step_by(length) {
            let wgsl = chain(window);
            template::validate(&format!("chain of {length}"), &wgsl).unwrap_or_else(|e| panic!("{e}\n{wgsl}"));
            // Every link's constants and entry point renamed; the status word past the links.
            for i in 0..length {
                assert!(wgsl.contains(&format!("override {}: bool", link_name(i, "CHAINED"))), "link {i}");
                assert!(wgsl.contains(&format!("fn {}(", link_name(i, "main"))), "link {i}");
            }
            let status = binding_bases(window).last().copied().unwrap_or(0);
            assert!(wgsl.contains(&format!("@binding({status}) var<storage, read_write> chain_status")), "{wgsl}");
            assert_eq!(wgsl.matches("@compute").count(), 1);
        }
    }
}

/// A chain's GEMM links do not touch their next inputs' cache lines (`mfn_compiler::chain::TOUCHING`:
/// chains run a few samples, whose inputs the caches hold), the same kernels dispatched alone do;
/// and chains of the kernels' wide forms (`mfn_compiler::wide`, which the runtime runs on CPU
/// adapters with 64-bit integers) are valid WGSL too.
#[test]
fn chained_gemms_do_not_touch_and_wide_forms_chain() {
    let onnx = mfn_models::mobilefacenet(mfn_models::Variant::Mfn112x112, 2024).write_to_bytes().expect("model serialises");
    let program = mfn_compiler::compile(&onnx, &Default::default()).expect("compiles");
    let touching = format!("override {}: bool = true;", mfn_compiler::chain::TOUCHING);
    let links = sharing_links(&program);
    let gemms: Vec<usize> = (0..links.len()).filter(|&i| links[i].wgsl.contains(&touching)).collect();
    assert!(gemms.len() >= 10, "{} GEMM links", gemms.len());
    let wgsl = chain(&links[..6]);
    for (i, link) in links[..6].iter().enumerate() {
        let constant = link_name(i, mfn_compiler::chain::TOUCHING);
        if link.wgsl.contains(&touching) {
            assert!(wgsl.contains(&format!("const {constant}: bool = false;")), "link {i} touches:\n{wgsl}");
        }
        assert!(!wgsl.contains(&format!("override {constant}")), "link {i}");
    }
    let wide: Vec<String> = links.iter().map(|l| mfn_compiler::wide::wide_loads(l.wgsl, program.precision).unwrap_or_else(|| l.wgsl.to_string())).collect();
    assert!(wide.iter().zip(&links).filter(|(w, l)| w.as_str() != l.wgsl).count() >= gemms.len(), "GEMMs without a wide form");
    let wide_links: Vec<Link> = wide.iter().zip(&links).map(|(w, l)| Link { wgsl: w, ..*l }).collect();
    for window in wide_links.windows(3).step_by(3) {
        let wgsl = chain(window);
        template::validate_with("wide chain", &wgsl, template::wide_capabilities()).unwrap_or_else(|e| panic!("{e}\n{wgsl}"));
    }
}
