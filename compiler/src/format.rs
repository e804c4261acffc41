//! The `.mfn` file: a compiled [`Program`] (kernels, plan, weights) in one self-contained file that
//! the runtime loads without the ONNX front end or naga.
//!
//! Layout (little-endian): the magic `MFNPROG\0`, the format version (u32), the payload length
//! (u64), the CRC-32 of the payload (u32), then the payload. Every length inside the payload is
//! checked against the bytes that remain before anything is allocated, so a corrupted or hostile
//! file is an error, never a huge allocation or a panic.

use thiserror::Error;

use crate::program::{Kernel, Port, Precision, Program, Resource, Stats, Step, Weight};

/// The first 8 bytes of every `.mfn` file.
pub const MAGIC: &[u8; 8] = b"MFNPROG\0";
/// Bumped on any change of the payload's layout, or of what the runtime may assume of its kernels;
/// other versions are rejected. 2: several outputs, steps carry the shapes of their inputs, the
/// storage precision and whether the model normalises its own input. 4: kernels say which bindings
/// are textures, weights whether they are one. 5: the subgroup vec4 GEMM can share its tiles
/// among a CPU driver's threads (a tile-counter binding past its output, [`crate::Kernel::tile_counters`]).
/// 6: so can the depthwise 3x3 kernels and the subgroup pointwise and conv2d kernels, and the
/// counters are 64 bytes apart. 7: kernels that share their tiles say how many loop iterations a
/// unit takes ([`crate::Kernel::unit_iterations`]) and cap the units an invocation takes. 8: they
/// can run as links of a chain ([`crate::chain`]). 9: every kernel with loops says how many
/// iterations an invocation's unit takes, and `linear` and `gdconv` add 8 products an iteration.
/// 10: the subgroup vec4 GEMM reads and writes pairs of pixel vec4s (elements of 32 bytes in f32),
/// so a binding it leaves unused must hold at least that, and needs planes of a multiple of 8 pixels.
pub const VERSION: u32 = 10;
const HEADER: usize = 8 + 4 + 8 + 4;

/// Why bytes cannot be read as an `.mfn` file.
#[derive(Debug, Error, PartialEq)]
pub enum FormatError {
    /// The bytes do not begin with [`MAGIC`] (nor are a beginning of it).
    #[error("not an .mfn file (no MFNPROG magic at the start)")]
    NotMfn,
    /// The file is of another format version than [`VERSION`].
    #[error(".mfn format version {found} is not supported (this build reads version {VERSION}); recompile the model with `mfn pack`")]
    Version {
        /// The version the file states.
        found: u32,
    },
    /// The file's length disagrees with its header: shorter than the header, or a payload of
    /// another length than the header states.
    #[error(".mfn file is truncated: {expected} bytes expected, {actual} present")]
    Truncated {
        /// Bytes the header implies (the header's own size where the file is shorter than it).
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// The payload's CRC-32 differs from the one in the header.
    #[error(".mfn file is corrupted: checksum {stored:08x} stored, {computed:08x} computed")]
    Checksum {
        /// The CRC-32 stored in the header.
        stored: u32,
        /// The CRC-32 of the payload as read.
        computed: u32,
    },
    /// The payload does not decode to a consistent program: a field that runs past its end, bytes
    /// after the program, a name that is not UTF-8, an index out of range, and the like. Holds what
    /// is wrong.
    #[error(".mfn file is malformed: {0}")]
    Malformed(String),
}

/// Whether `bytes` are (the start of) an `.mfn` file: they begin with the magic, or are a
/// non-empty beginning of it (a file truncated inside the magic).
pub fn is_mfn(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len().min(MAGIC.len()) == bytes.iter().zip(MAGIC).take_while(|(a, b)| a == b).count()
}

impl Program {
    /// Serialises the program as an `.mfn` file.
    pub fn to_mfn(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.program(self);
        let payload = w.0;
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Reads an `.mfn` file, checking its magic, version, length and checksum.
    pub fn from_mfn(bytes: &[u8]) -> Result<Program, FormatError> {
        if !is_mfn(bytes) {
            return Err(FormatError::NotMfn);
        }
        if bytes.len() < HEADER {
            return Err(FormatError::Truncated { expected: HEADER as u64, actual: bytes.len() as u64 });
        }
        let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if found != VERSION {
            return Err(FormatError::Version { found });
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let stored = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
        let payload = &bytes[HEADER..];
        if payload.len() as u64 != len {
            return Err(FormatError::Truncated { expected: (HEADER as u64).saturating_add(len), actual: bytes.len() as u64 });
        }
        let computed = crc32fast::hash(payload);
        if computed != stored {
            return Err(FormatError::Checksum { stored, computed });
        }
        let mut r = Reader { bytes: payload, pos: 0 };
        let program = r.program()?;
        if r.pos != payload.len() {
            return Err(FormatError::Malformed(format!("{} bytes after the program", payload.len() - r.pos)));
        }
        program.check()?;
        Ok(program)
    }

    /// Cross-references a decoded program: every index it holds must point inside it.
    fn check(&self) -> Result<(), FormatError> {
        let bad = |m: String| Err(FormatError::Malformed(m));
        for (i, s) in self.steps.iter().enumerate() {
            let Some(k) = self.kernels.get(s.kernel) else { return bad(format!("step {i} uses kernel {} of {}", s.kernel, self.kernels.len())) };
            if s.bindings.len() != k.bindings as usize {
                return bad(format!("step {i} binds {} buffers, kernel {} has {}", s.bindings.len(), k.name, k.bindings));
            }
            for (j, r) in s.bindings.iter().enumerate() {
                match *r {
                    Resource::Activation(b) if b >= self.buffers.len() => return bad(format!("step {i} binds buffer {b}")),
                    Resource::Weight(w) if w >= self.weights.len() => return bad(format!("step {i} binds weight {w}")),
                    _ => {}
                }
                let texture = match *r {
                    Resource::Weight(w) => self.weights[w].texture,
                    _ => None,
                };
                if k.is_texture(j) != texture.is_some() {
                    let (wants, got) = if k.is_texture(j) { ("a texture", "something else") } else { ("a buffer", "a texture") };
                    return bad(format!("step {i}: binding {j} of kernel {} is {wants}, the step binds {got}", k.name));
                }
            }
        }
        for w in &self.weights {
            if let Some(width) = w.texture {
                if !w.data.len().is_multiple_of(4 * width as usize) || w.data.is_empty() {
                    return bad(format!("texture weight '{}' of {} values is not whole rows of {width} RGBA texels", w.name, w.data.len()));
                }
            }
        }
        if self.outputs.is_empty() {
            return bad("the program has no output".into());
        }
        for p in std::iter::once(&self.input).chain(&self.outputs) {
            let elements = p.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if p.buffer >= self.buffers.len() || elements.is_none_or(|n| n > self.buffers[p.buffer]) {
                return bad(format!("port '{}' does not fit its buffer", p.name));
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn usize(&mut self, v: usize) {
        self.u64(v as u64);
    }
    fn str(&mut self, s: &str) {
        self.usize(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn usizes(&mut self, v: &[usize]) {
        self.usize(v.len());
        v.iter().for_each(|&x| self.usize(x));
    }
    fn precision(&mut self, p: Precision) {
        self.u32(match p {
            Precision::F32 => 32,
            Precision::F16 => 16,
        });
    }
    fn port(&mut self, p: &Port) {
        self.str(&p.name);
        self.usizes(&p.shape);
        self.usize(p.buffer);
    }
    fn program(&mut self, p: &Program) {
        self.usize(p.kernels.len());
        for k in &p.kernels {
            self.str(&k.name);
            self.str(&k.template);
            self.str(&k.wgsl);
            match &k.subgroup_wgsl {
                Some(wgsl) => {
                    self.u32(1);
                    self.str(wgsl);
                }
                None => self.u32(0),
            }
            self.u32(k.workgroup_size);
            self.u32(k.bindings);
            self.u32(k.textures);
            self.u32(k.unit_iterations);
        }
        self.usize(p.steps.len());
        for s in &p.steps {
            self.usize(s.kernel);
            self.usize(s.nodes.len());
            s.nodes.iter().for_each(|n| self.str(n));
            self.usize(s.bindings.len());
            for r in &s.bindings {
                let (tag, index) = match *r {
                    Resource::Activation(b) => (0, b),
                    Resource::Weight(w) => (1, w),
                    Resource::Unused => (2, 0),
                };
                self.u32(tag);
                self.usize(index);
            }
            self.u32(s.workgroups[0]);
            self.u32(s.workgroups[1]);
            self.usize(s.input_shapes.len());
            s.input_shapes.iter().for_each(|shape| self.usizes(shape));
            self.usizes(&s.output_shape);
            self.u64(s.macs);
        }
        self.usizes(&p.buffers);
        self.usize(p.weights.len());
        for w in &p.weights {
            self.str(&w.name);
            self.usize(w.data.len());
            w.data.iter().for_each(|v| self.0.extend_from_slice(&v.to_le_bytes()));
            self.precision(w.precision);
            self.u32(w.texture.unwrap_or(0));
        }
        self.port(&p.input);
        self.usize(p.outputs.len());
        p.outputs.iter().for_each(|o| self.port(o));
        self.u32(p.normalises_input as u32);
        self.precision(p.precision);
        let s = &p.stats;
        [s.parameters, s.macs, s.peak_activation_bytes, s.total_activation_bytes].into_iter().for_each(|v| self.u64(v));
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FormatError> {
        if self.bytes.len() - self.pos < n {
            return Err(FormatError::Malformed(format!("a field at byte {} runs past the end", self.pos)));
        }
        self.pos += n;
        Ok(&self.bytes[self.pos - n..self.pos])
    }
    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn usize(&mut self) -> Result<usize, FormatError> {
        usize::try_from(self.u64()?).map_err(|_| FormatError::Malformed("a size does not fit this machine".into()))
    }
    /// A count of items of at least `min_size` bytes each, checked against what remains.
    fn count(&mut self, min_size: usize) -> Result<usize, FormatError> {
        let n = self.usize()?;
        if n.saturating_mul(min_size) > self.bytes.len() - self.pos {
            return Err(FormatError::Malformed(format!("a count of {n} at byte {} exceeds the file", self.pos - 8)));
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String, FormatError> {
        let n = self.count(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| FormatError::Malformed("a name is not UTF-8".into()))
    }
    fn usizes(&mut self) -> Result<Vec<usize>, FormatError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.usize()).collect()
    }
    fn precision(&mut self) -> Result<Precision, FormatError> {
        match self.u32()? {
            32 => Ok(Precision::F32),
            16 => Ok(Precision::F16),
            other => Err(FormatError::Malformed(format!("precision tag {other} at byte {}", self.pos - 4))),
        }
    }
    fn port(&mut self) -> Result<Port, FormatError> {
        Ok(Port { name: self.str()?, shape: self.usizes()?, buffer: self.usize()? })
    }
    fn program(&mut self) -> Result<Program, FormatError> {
        let n = self.count(40)?;
        let kernels = (0..n)
            .map(|_| {
                let (name, template, wgsl) = (self.str()?, self.str()?, self.str()?);
                let subgroup_wgsl = match self.u32()? {
                    0 => None,
                    1 => Some(self.str()?),
                    other => return Err(FormatError::Malformed(format!("subgroup variant tag {other} at byte {} (kernel {name})", self.pos - 4))),
                };
                let (workgroup_size, bindings, textures, unit_iterations) = (self.u32()?, self.u32()?, self.u32()?, self.u32()?);
                Ok(Kernel { name, template, wgsl, subgroup_wgsl, workgroup_size, bindings, textures, unit_iterations })
            })
            .collect::<Result<_, FormatError>>()?;
        let n = self.count(56)?;
        let steps = (0..n).map(|_| self.step()).collect::<Result<_, _>>()?;
        let buffers = self.usizes()?;
        let n = self.count(16)?;
        let weights = (0..n)
            .map(|_| {
                let name = self.str()?;
                let len = self.count(4)?;
                let data = self.take(4 * len)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
                let precision = self.precision()?;
                let texture = Some(self.u32()?).filter(|&width| width != 0);
                Ok(Weight { name, data, precision, texture })
            })
            .collect::<Result<_, FormatError>>()?;
        let input = self.port()?;
        let n = self.count(24)?;
        let outputs = (0..n).map(|_| self.port()).collect::<Result<_, _>>()?;
        let normalises_input = match self.u32()? {
            0 => false,
            1 => true,
            other => return Err(FormatError::Malformed(format!("normalises_input flag {other}"))),
        };
        let precision = self.precision()?;
        let stats = Stats { parameters: self.u64()?, macs: self.u64()?, peak_activation_bytes: self.u64()?, total_activation_bytes: self.u64()? };
        Ok(Program { kernels, steps, buffers, weights, input, outputs, normalises_input, precision, stats })
    }
    fn step(&mut self) -> Result<Step, FormatError> {
        let kernel = self.usize()?;
        let n = self.count(8)?;
        let nodes = (0..n).map(|_| self.str()).collect::<Result<_, _>>()?;
        let n = self.count(12)?;
        let bindings = (0..n)
            .map(|_| {
                let (tag, index) = (self.u32()?, self.usize()?);
                match tag {
                    0 => Ok(Resource::Activation(index)),
                    1 => Ok(Resource::Weight(index)),
                    2 => Ok(Resource::Unused),
                    t => Err(FormatError::Malformed(format!("unknown binding kind {t}"))),
                }
            })
            .collect::<Result<_, _>>()?;
        let workgroups = [self.u32()?, self.u32()?];
        let n = self.count(8)?;
        let input_shapes = (0..n).map(|_| self.usizes()).collect::<Result<_, _>>()?;
        Ok(Step { kernel, nodes, bindings, workgroups, input_shapes, output_shape: self.usizes()?, macs: self.u64()? })
    }
}
