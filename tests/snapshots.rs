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
    for t in mfn_compiler::codegen::template::Template::ALL {
        mfn_compiler::codegen::template::validate(t.name(), t.source()).unwrap_or_else(|e| panic!("shaders/{}.wgsl: {e}", t.name()));
    }
}
