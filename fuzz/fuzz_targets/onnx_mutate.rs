//! Structure-aware: the fuzzer's bytes choose mutations (`mfn_models::mutate`, the same code as
//! the seeded test `compiler/tests/mutations.rs`) of a MobileFaceNet's protobuf structure —
//! dimensions, attributes, initializer data, node inputs and outputs, op types — and the result
//! is serialised and compiled. The model is the pretrained one in `$MFN_SHARED/models` when it is
//! there, else the project's generated one.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mfn_models::mutate::{mutate_model, ByteChoices, Choices};
use onnx_protobuf::{Message, ModelProto};

fn base() -> &'static ModelProto {
    static BASE: OnceLock<ModelProto> = OnceLock::new();
    BASE.get_or_init(|| {
        let shared = std::env::var("MFN_SHARED").unwrap_or_else(|_| "../shared".into());
        let path = std::path::Path::new(&shared).join("models/mobilefacenet-insightface.onnx");
        match std::fs::read(&path) {
            Ok(bytes) => {
                eprintln!("onnx_mutate: mutating {}", path.display());
                ModelProto::parse_from_bytes(&bytes).expect("the pretrained model parses")
            }
            Err(_) => {
                eprintln!("onnx_mutate: {} not found, mutating the generated MobileFaceNet", path.display());
                mfn_models::mobilefacenet(mfn_models::Variant::Mfn112x112, 1)
            }
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut choices = ByteChoices::new(data);
    let count = 1 + choices.below(4);
    let mut model = base().clone();
    mutate_model(&mut model, &mut choices, count);
    if let Ok(bytes) = model.write_to_bytes() {
        let _ = mfn_compiler::compile(&bytes, &Default::default());
    }
});
