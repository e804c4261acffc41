//! Translation of a generated WGSL kernel into what each platform receives, through naga's back
//! ends: SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (GL / GLES 3.1 compute).

use crate::error::{CompileError, Result};

/// A shading language a kernel can be emitted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// WGSL, as generated (WebGPU).
    Wgsl,
    /// SPIR-V 1.3 (Vulkan).
    Spirv,
    /// Metal Shading Language 2.1 (Metal).
    Msl,
    /// HLSL (DX12).
    Hlsl,
    /// GLSL compute (GL / GLES 3.1).
    Glsl,
}

impl Language {
    /// Every language, WGSL first.
    pub const ALL: [Language; 5] = [Language::Wgsl, Language::Spirv, Language::Msl, Language::Hlsl, Language::Glsl];

    /// The language a name stands for, in any case: `wgsl`, `spirv` or `spv`, `msl` or `metal`,
    /// `hlsl`, `glsl`; `None` for any other name.
    pub fn parse(name: &str) -> Option<Language> {
        Some(match name.to_ascii_lowercase().as_str() {
            "wgsl" => Language::Wgsl,
            "spirv" | "spv" => Language::Spirv,
            "msl" | "metal" => Language::Msl,
            "hlsl" => Language::Hlsl,
            "glsl" => Language::Glsl,
            _ => return None,
        })
    }

    /// The language's canonical lower-case name, one [`Language::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Language::Wgsl => "wgsl",
            Language::Spirv => "spirv",
            Language::Msl => "msl",
            Language::Hlsl => "hlsl",
            Language::Glsl => "glsl",
        }
    }

    /// File extension of an emitted kernel.
    pub fn extension(self) -> &'static str {
        match self {
            Language::Wgsl => "wgsl",
            Language::Spirv => "spv",
            Language::Msl => "metal",
            Language::Hlsl => "hlsl",
            Language::Glsl => "comp",
        }
    }
}

/// An emitted kernel: text, or SPIR-V words as little-endian bytes.
pub enum Emitted {
    /// Source text: WGSL, MSL, HLSL or GLSL.
    Text(String),
    /// A SPIR-V module: its words as little-endian bytes.
    Binary(Vec<u8>),
}

/// Translates the WGSL kernel `name` into `lang`.
pub fn emit(name: &str, wgsl: &str, lang: Language) -> Result<Emitted> {
    let fail = |message: String| CompileError::InvalidWgsl { kernel: name.into(), message };
    if lang == Language::Wgsl {
        return Ok(Emitted::Text(wgsl.to_string()));
    }
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| fail(e.emit_to_string(wgsl)))?;
    let info =
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), crate::codegen::template::capabilities()).validate(&module).map_err(|e| fail(e.emit_to_string(wgsl)))?;
    let backend = |lang: &str, e: &dyn std::fmt::Display| CompileError::Translate { kernel: name.into(), language: lang.into(), message: e.to_string() };
    // Pipeline constants (WGSL `override`) take their defaults: the form every GPU runs (the tile
    // sharing of CPU drivers, `Kernel::tile_counters`, is set by the runtime on WGSL).
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, None, &naga::back::PipelineConstants::default()).map_err(|e| backend("pipeline constants", &e))?;
    let entry = || Some((naga::ShaderStage::Compute, "main".to_string()));
    Ok(match lang {
        Language::Wgsl => unreachable!("handled above"),
        Language::Spirv => {
            let options = naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
            let words = naga::back::spv::write_vec(&module, &info, &options, None).map_err(|e| backend("SPIR-V", &e))?;
            Emitted::Binary(words.iter().flat_map(|w| w.to_le_bytes()).collect())
        }
        Language::Msl => {
            let options = naga::back::msl::Options { lang_version: (2, 1), ..Default::default() };
            let pipeline = naga::back::msl::PipelineOptions { entry_point: entry(), ..Default::default() };
            let (text, _) = naga::back::msl::write_string(&module, &info, &options, &pipeline).map_err(|e| backend("MSL", &e))?;
            Emitted::Text(text)
        }
        Language::Hlsl => {
            let mut text = String::new();
            let options = naga::back::hlsl::Options::default();
            let pipeline = naga::back::hlsl::PipelineOptions { entry_point: entry() };
            naga::back::hlsl::Writer::new(&mut text, &options, &pipeline).write(&module, &info, None).map_err(|e| backend("HLSL", &e))?;
            Emitted::Text(text)
        }
        Language::Glsl => {
            let mut text = String::new();
            let options = naga::back::glsl::Options::default();
            let pipeline = naga::back::glsl::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: "main".into(), multiview: None };
            let policies = naga::proc::BoundsCheckPolicies::default();
            naga::back::glsl::Writer::new(&mut text, &module, &info, &options, &pipeline, policies).and_then(|mut w| w.write().map(|_| ())).map_err(|e| backend("GLSL", &e))?;
            Emitted::Text(text)
        }
    })
}
