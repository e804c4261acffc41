//! WGSL templates from `shaders/` and their specialisation. Each template is valid WGSL on its
//! own: its block of default constants, between `// mfn:constants` and `// mfn:end-constants`,
//! is replaced as a whole by the kernel's constants. Shader bodies are never edited.

use crate::error::{CompileError, Result};
use crate::program::Precision;

/// The kernel templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Template {
    /// The direct 2-D convolution, dense or grouped, with an optional affine prologue: every
    /// convolution that no other template takes.
    Conv2d,
    /// [`Template::Conv2d`] with the weights shared across a subgroup: its
    /// [`Template::subgroup_variant`].
    Conv2dSubgroup,
    /// The depthwise convolution of any kernel, strides and padding, 8 outputs of a row an
    /// invocation.
    Depthwise,
    /// The depthwise convolution of horizontal stride 1 on rows of a multiple of 4 pixels.
    DepthwiseVec4,
    /// The depthwise 3x3 convolution of left padding 1 and horizontal stride 1 or 2, four output
    /// rows an invocation.
    Depthwise3x3,
    /// [`Template::Depthwise3x3`] on rows of a multiple of 4 pixels (vec4 loads and stores).
    Depthwise3x3Vec4,
    /// The pointwise convolution (1x1, stride 1, no padding), a GEMM, on feature maps of any size
    /// (made for small ones such as 7x7).
    Pointwise,
    /// [`Template::Pointwise`] with the inputs shared across a subgroup: its
    /// [`Template::subgroup_variant`].
    PointwiseSubgroup,
    /// The pointwise convolution of feature maps of a multiple of 4 pixels (vec4 activations).
    PointwiseVec4,
    /// [`Template::PointwiseVec4`] with the weights shared across a subgroup: its
    /// [`Template::subgroup_variant`], never chosen by lowering itself.
    PointwiseVec4Subgroup,
    /// The global depthwise convolution, one invocation a channel; global average pooling too
    /// (every weight 1 / HW).
    GdConv,
    /// The fully connected layer, one invocation an output.
    Linear,
    /// An activation, per-channel affine map or binary operation of two same-shaped activations
    /// that no producer absorbed, one invocation an element.
    Elementwise,
    /// Max pooling, one invocation an output element.
    MaxPool,
    /// Nearest-neighbour upsampling by whole factors, one invocation an output element.
    Upsample,
    /// A permutation of the axes of a sample of up to four, one invocation an output element.
    Transpose,
    /// The concatenation of up to four inputs along one axis, one invocation an output element.
    Concat,
}

impl Template {
    /// Every template, in declaration order.
    pub const ALL: [Template; 17] = [
        Template::Conv2d,
        Template::Conv2dSubgroup,
        Template::Depthwise,
        Template::DepthwiseVec4,
        Template::Depthwise3x3,
        Template::Depthwise3x3Vec4,
        Template::Pointwise,
        Template::PointwiseSubgroup,
        Template::PointwiseVec4,
        Template::PointwiseVec4Subgroup,
        Template::GdConv,
        Template::Linear,
        Template::Elementwise,
        Template::MaxPool,
        Template::Upsample,
        Template::Transpose,
        Template::Concat,
    ];

    /// The template's name: its file stem in `shaders/` and the suffix of its kernels' names.
    pub fn name(self) -> &'static str {
        match self {
            Template::Conv2d => "conv2d",
            Template::Conv2dSubgroup => "conv2d_subgroup",
            Template::Depthwise => "depthwise",
            Template::DepthwiseVec4 => "depthwise_vec4",
            Template::Depthwise3x3 => "depthwise3x3",
            Template::Depthwise3x3Vec4 => "depthwise3x3_vec4",
            Template::Pointwise => "pointwise",
            Template::PointwiseSubgroup => "pointwise_subgroup",
            Template::PointwiseVec4 => "pointwise_vec4",
            Template::PointwiseVec4Subgroup => "pointwise_vec4_subgroup",
            Template::GdConv => "gdconv",
            Template::Linear => "linear",
            Template::Elementwise => "elementwise",
            Template::MaxPool => "maxpool",
            Template::Upsample => "upsample",
            Template::Transpose => "transpose",
            Template::Concat => "concat",
        }
    }

    /// The template's WGSL source as in `shaders/`, default constants included (built into the
    /// crate).
    pub fn source(self) -> &'static str {
        match self {
            Template::Conv2d => include_str!("../../../shaders/conv2d.wgsl"),
            Template::Conv2dSubgroup => include_str!("../../../shaders/conv2d_subgroup.wgsl"),
            Template::Depthwise => include_str!("../../../shaders/depthwise.wgsl"),
            Template::DepthwiseVec4 => include_str!("../../../shaders/depthwise_vec4.wgsl"),
            Template::Depthwise3x3 => include_str!("../../../shaders/depthwise3x3.wgsl"),
            Template::Depthwise3x3Vec4 => include_str!("../../../shaders/depthwise3x3_vec4.wgsl"),
            Template::Pointwise => include_str!("../../../shaders/pointwise.wgsl"),
            Template::PointwiseSubgroup => include_str!("../../../shaders/pointwise_subgroup.wgsl"),
            Template::PointwiseVec4 => include_str!("../../../shaders/pointwise_vec4.wgsl"),
            Template::PointwiseVec4Subgroup => include_str!("../../../shaders/pointwise_vec4_subgroup.wgsl"),
            Template::GdConv => include_str!("../../../shaders/gdconv.wgsl"),
            Template::Linear => include_str!("../../../shaders/linear.wgsl"),
            Template::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
            Template::MaxPool => include_str!("../../../shaders/maxpool.wgsl"),
            Template::Upsample => include_str!("../../../shaders/upsample.wgsl"),
            Template::Transpose => include_str!("../../../shaders/transpose.wgsl"),
            Template::Concat => include_str!("../../../shaders/concat.wgsl"),
        }
    }

    /// The template computing the same dispatches (same constants, workgroups and bindings) with
    /// subgroup operations, for devices with subgroups of at least [`MIN_SUBGROUP_SIZE`]
    /// invocations.
    pub fn subgroup_variant(self) -> Option<Template> {
        match self {
            Template::Conv2d => Some(Template::Conv2dSubgroup),
            Template::Pointwise => Some(Template::PointwiseSubgroup),
            Template::PointwiseVec4 => Some(Template::PointwiseVec4Subgroup),
            _ => None,
        }
    }

    /// The binding of the per-channel parameters (kept f32 whatever the precision), if any.
    pub fn params_binding(self) -> Option<usize> {
        match self {
            Template::Elementwise => Some(1),
            Template::MaxPool | Template::Upsample | Template::Transpose | Template::Concat => None,
            _ => Some(2),
        }
    }

    /// Bindings that are textures, bit i for binding i ([`crate::Kernel::textures`]): the weights
    /// of the pointwise and the depthwise 3x3 kernels, and the epilogue parameters of the vec4
    /// pointwise kernels.
    pub fn textures(self) -> u32 {
        match self {
            Template::PointwiseVec4 | Template::PointwiseVec4Subgroup => 1 << 1 | 1 << 2,
            Template::Pointwise | Template::PointwiseSubgroup | Template::Depthwise3x3 | Template::Depthwise3x3Vec4 => 1 << 1,
            _ => 0,
        }
    }

    /// Number of bindings (the last one is the output).
    pub fn bindings(self) -> u32 {
        match self {
            Template::Elementwise => 4,
            Template::MaxPool | Template::Upsample | Template::Transpose => 2,
            _ => 5,
        }
    }
}

/// A specialisation constant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Const {
    /// A `u32`.
    U32(u32),
    /// An `f32`; infinities are clamped to the finite range (WGSL has no infinity literal).
    F32(f32),
    /// A `bool`.
    Bool(bool),
    /// A type: `alias NAME = TYPE;` (such as the element type of a kernel's output).
    Type(&'static str),
    /// A value of the given type, written as a WGSL expression (for a type of the block's own).
    Typed(&'static str, &'static str),
}

impl Const {
    /// The declaration of the constant `name` in WGSL.
    fn declare(self, name: &str) -> String {
        let (ty, value) = match self {
            Const::U32(v) => ("u32", format!("{v}u")),
            // WGSL has no infinity literal: unbounded clip limits become the largest finite f32.
            Const::F32(v) => ("f32", format!("{:?}", v.clamp(f32::MIN, f32::MAX))),
            Const::Bool(v) => ("bool", v.to_string()),
            Const::Type(ty) => return format!("alias {name} = {ty};\n"),
            Const::Typed(ty, expr) => (ty, expr.to_string()),
        };
        format!("const {name}: {ty} = {value};\n")
    }
}

const BEGIN: &str = "// mfn:constants\n";
const END: &str = "// mfn:end-constants\n";

/// The names of the constants a template declares in its constants block: its `const`s and its
/// `alias`es but `stored` (the precision's, see [`Precision::wgsl_prelude`]).
pub fn declared_constants(template: Template) -> Vec<String> {
    let src = template.source();
    let (Some(b), Some(e)) = (src.find(BEGIN), src.find(END)) else { return Vec::new() };
    src[b + BEGIN.len()..e]
        .lines()
        .filter_map(|l| {
            let name = match l.strip_prefix("const ") {
                Some(rest) => rest.split(':').next(),
                None => l.strip_prefix("alias ")?.split('=').next(),
            };
            Some(name?.trim().to_string())
        })
        .filter(|name| name != "stored")
        .collect()
}

/// The template's source with its constants block replaced by `constants`, which must name
/// exactly the constants the template declares, in order.
pub fn specialise(template: Template, header: &str, constants: &[(&str, Const)], precision: Precision) -> Result<String> {
    let src = template.source();
    let declared = declared_constants(template);
    let given: Vec<&str> = constants.iter().map(|(n, _)| *n).collect();
    if declared != given {
        return Err(CompileError::Internal(format!("template {} declares {declared:?}, the key gives {given:?}", template.name())));
    }
    let (b, e) = (src.find(BEGIN).unwrap_or(0), src.find(END).unwrap_or(0));
    let mut out = String::with_capacity(src.len() + header.len());
    out.push_str(header);
    out.push_str(&src[..b]);
    out.push_str("// mfn:specialised\n");
    out.push_str(&precision.wgsl_prelude());
    for (name, value) in constants {
        out.push_str(&value.declare(name));
    }
    out.push_str(&src[e + END.len()..]);
    Ok(out)
}

pub use crate::program::MIN_SUBGROUP_SIZE;

/// What generated kernels may use: f16 (f16 programs) and subgroup operations (subgroup variants).
pub fn capabilities() -> naga::valid::Capabilities {
    naga::valid::Capabilities::SHADER_FLOAT16 | naga::valid::Capabilities::SUBGROUP
}

/// What the wide form of a kernel's loads ([`crate::wide`]) may use besides: 64-bit integers, and
/// f16 packing for f16 programs.
pub fn wide_capabilities() -> naga::valid::Capabilities {
    capabilities() | naga::valid::Capabilities::SHADER_INT64 | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32
}

/// Parses and validates WGSL with naga.
pub fn validate(name: &str, wgsl: &str) -> Result<()> {
    validate_with(name, wgsl, capabilities())
}

/// Parses and validates WGSL with naga, allowing `capabilities`.
pub fn validate_with(name: &str, wgsl: &str, capabilities: naga::valid::Capabilities) -> Result<()> {
    let invalid = |message: String| CompileError::InvalidWgsl { kernel: name.into(), message };
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| invalid(e.emit_to_string(wgsl)))?;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities).validate(&module).map_err(|e| invalid(e.emit_to_string(wgsl)))?;
    Ok(())
}
