//! Snapshots of what the compiler produces for the project's generated MobileFaceNets: the IR
//! after the passes, the execution plan, and every generated WGSL kernel. A change to any of
//! them shows up as a reviewable diff (`cargo insta review`).

mod common;

use mfn::Variant;

#[test]
fn optimised_ir_of_every_variant() {
    for variant in Variant::all() {
        let graph = common::optimised(&mfn::synthetic_model(variant));
        insta::assert_snapshot!(format!("ir_{}", variant.name()), graph.to_string());
    }
}

#[test]
fn plan_and_kernels_of_mobilefacenet() {
    let program = common::compile(&mfn::synthetic_model(Variant::Mfn112x112));
    insta::assert_snapshot!("plan_mobilefacenet-112x112", program.plan_text());
    for kernel in &program.kernels {
        insta::assert_snapshot!(format!("wgsl_mobilefacenet-112x112_{}", kernel.name), kernel.wgsl);
        if let Some(variant) = &kernel.subgroup_wgsl {
            insta::assert_snapshot!(format!("wgsl_mobilefacenet-112x112_{}_subgroup", kernel.name), variant);
        }
    }
}

#[test]
fn kernels_are_unique_and_valid() {
    let program = common::compile(&mfn::synthetic_model(Variant::Mfn112x112));
    for (i, a) in program.kernels.iter().enumerate() {
        mfn_compiler::codegen::template::validate(&a.name, &a.wgsl).expect("valid WGSL");
        if let Some(variant) = &a.subgroup_wgsl {
            mfn_compiler::codegen::template::validate(&a.name, variant).expect("valid WGSL (subgroup variant)");
        }
        // The wide form of the loads, which the runtime makes on CPU adapters (the compiler does
        // not validate it: it would add a fifth to every compile, for a form most adapters never
        // run; wgpu validates it where it runs).
        for wgsl in std::iter::once(&a.wgsl).chain(&a.subgroup_wgsl) {
            if let Some(wide) = mfn_compiler::wide::wide_loads(wgsl, program.precision) {
                mfn_compiler::codegen::template::validate_with(&a.name, &wide, mfn_compiler::codegen::template::wide_capabilities()).expect("valid WGSL (wide loads)");
            }
        }
        for b in &program.kernels[i + 1..] {
            // Compared without their headers (which name them and their dispatches).
            let body = |wgsl: &str| wgsl[wgsl.find("// mfn:specialised").expect("specialised constants")..].to_string();
            assert_ne!(body(&a.wgsl), body(&b.wgsl), "{} and {} are the same kernel", a.name, b.name);
        }
    }
    // 12 inverted-residual blocks share shapes: far fewer kernels than dispatches.
    assert!(program.kernels.len() < program.steps.len() / 2, "{} kernels for {} dispatches", program.kernels.len(), program.steps.len());
}

#[test]
fn templates_are_valid_wgsl_on_their_own() {
    use mfn_compiler::codegen::template::{validate, validate_with, wide_capabilities, Template};
    let mut wide = 0;
    for t in Template::ALL {
        validate(t.name(), t.source()).unwrap_or_else(|e| panic!("shaders/{}.wgsl: {e}", t.name()));
        // And the wide form of its loads, in both precisions (see kernels_are_unique_and_valid).
        for precision in [mfn_compiler::Precision::F32, mfn_compiler::Precision::F16] {
            let source = match precision {
                mfn_compiler::Precision::F32 => t.source().to_string(),
                mfn_compiler::Precision::F16 => format!("enable f16;\n{}", t.source().replace("alias stored = f32;", "alias stored = f16;")),
            };
            if let Some(text) = mfn_compiler::wide::wide_loads(&source, precision) {
                validate_with(t.name(), &text, wide_capabilities()).unwrap_or_else(|e| panic!("shaders/{}.wgsl, wide form ({precision:?}): {e}", t.name()));
                wide += 1;
            }
        }
    }
    assert!(wide >= 2, "{wide} wide forms");
}
