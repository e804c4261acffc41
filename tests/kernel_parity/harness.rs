//! The harness: a [`Case`] (a model, the kernels it must dispatch, what its optimised graph must
//! show) checked against the CPU evaluator on the imported and the optimised graph.

use super::*;

pub(crate) struct Case {
    name: String,
    onnx: Vec<u8>,
    input_shape: Vec<usize>,
    batch: usize,
    /// Most samples per GPU submission (smaller than `batch` to exercise batch splitting).
    max_batch: usize,
    /// Inputs are pixel values in [0, 255] instead of N(0, 1).
    pixels: bool,
    /// Template of every dispatch, in order.
    templates: Vec<&'static str>,
    /// Text the optimised graph dump must contain / must not contain.
    dump_has: Vec<&'static str>,
    dump_lacks: Vec<&'static str>,
}

impl Case {
    pub(crate) fn new(name: impl Into<String>, net: &mut Net, templates: &[&'static str]) -> Case {
        Case {
            name: name.into(),
            onnx: net.finish(),
            input_shape: net.input_shape.clone(),
            batch: 1,
            max_batch: 1,
            pixels: false,
            templates: templates.to_vec(),
            dump_has: Vec::new(),
            dump_lacks: Vec::new(),
        }
    }
    pub(crate) fn batch(self, batch: usize) -> Case {
        Case { batch, max_batch: batch, ..self }
    }
    pub(crate) fn max_batch(self, max_batch: usize) -> Case {
        Case { max_batch, ..self }
    }
    pub(crate) fn pixels(self) -> Case {
        Case { pixels: true, ..self }
    }
    pub(crate) fn dump_has(mut self, text: &'static str) -> Case {
        self.dump_has.push(text);
        self
    }
    pub(crate) fn dump_lacks(mut self, text: &'static str) -> Case {
        self.dump_lacks.push(text);
        self
    }
}

/// max |got - want| / max |want| (the reference is never all zeros here).
pub(crate) fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "output lengths differ");
    let scale = want.iter().fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max) / scale
}

/// A seed for the case's input, from its name (FNV-1a), so that every case gets its own numbers.
pub(crate) fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

pub(crate) fn dispatch_templates(program: &Program) -> Vec<&str> {
    program.steps.iter().map(|s| program.kernels[s.kernel].template.as_str()).collect()
}

/// Checks one case; returns the GPU's relative error (`None` without a GPU), or a description of
/// the first thing wrong.
pub(crate) fn check(case: &Case) -> Result<Option<f32>, String> {
    let imported = mfn_compiler::onnx::import(&case.onnx, 1, None).map_err(|e| format!("import: {e}"))?;
    let optimised = mfn_compiler::optimise(&case.onnx, &Default::default()).map_err(|e| format!("optimise: {e}"))?;
    let program = mfn_compiler::codegen::generate(&optimised).map_err(|e| format!("codegen: {e}"))?;
    let dump = optimised.to_string();
    let templates = dispatch_templates(&program);
    if templates != case.templates {
        return Err(format!("dispatches {templates:?}, expected {:?}; optimised graph:\n{dump}", case.templates));
    }
    for text in &case.dump_has {
        if !dump.contains(text) {
            return Err(format!("optimised graph lacks '{text}':\n{dump}"));
        }
    }
    for text in &case.dump_lacks {
        if dump.contains(text) {
            return Err(format!("optimised graph contains '{text}':\n{dump}"));
        }
    }
    let mut rng = Rng::new(seed_of(&case.name));
    let n = case.batch * case.input_shape.iter().product::<usize>();
    let input = if case.pixels { rng.uniform_vec(n, 0.0, 255.0) } else { rng.normal_vec(n, 1.0) };
    let want = mfn_compiler::eval::run(&imported, &input).map_err(|e| format!("eval (imported): {e}"))?;
    let opt = mfn_compiler::eval::run(&optimised, &input).map_err(|e| format!("eval (optimised): {e}"))?;
    let err = rel_err(&opt, &want);
    if err > TOLERANCE {
        return Err(format!("optimised graph differs from the imported one by {err:e}; optimised graph:\n{dump}"));
    }
    // Kernels with a subgroup variant run both ways: the variant where the adapter has subgroups
    // (lavapipe does), and the plain kernel.
    let has_variants = program.kernels.iter().any(|k| k.subgroup_wgsl.is_some());
    let mut worst = None;
    for subgroups in if has_variants { &[true, false][..] } else { &[true][..] } {
        let options = SessionOptions { max_batch: case.max_batch, subgroups: *subgroups, ..Default::default() };
        let Some(session) = common::session_with(&program, &options) else { return Ok(None) };
        let got = session.run(&input).map_err(|e| format!("GPU run: {e}"))?;
        let (err, err_opt) = (rel_err(&got, &want), rel_err(&got, &opt));
        if err.max(err_opt) > TOLERANCE {
            let variant = if session.subgroups() { "subgroup variants" } else { "plain kernels" };
            return Err(format!("GPU ({variant}) differs from the CPU evaluator by {err:e} (imported graph), {err_opt:e} (optimised graph); plan:\n{}", program.plan_text()));
        }
        worst = Some(err.max(worst.unwrap_or(0.0)));
    }
    Ok(worst)
}

/// Checks every case and fails with the list of those that went wrong.
pub(crate) fn run_cases(cases: Vec<Case>) {
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    let mut worst: Option<(f32, &str)> = None;
    for case in &cases {
        match check(case) {
            Err(e) => failures.push(format!("--- {}: {e}", case.name)),
            Ok(Some(err)) if worst.is_none_or(|(w, _)| err > w) => worst = Some((err, &case.name)),
            Ok(_) => {}
        }
    }
    if let Some((err, name)) = worst {
        eprintln!("{} cases, largest GPU error {err:e} ({name})", cases.len());
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// `n` items cycling through `items` in a seeded random order: every item appears (n / len times)
/// when n >= len, so a table drawn from it covers each option.
pub(crate) fn deck<T: Copy>(rng: &mut Rng, items: &[T], n: usize) -> Vec<T> {
    let mut out: Vec<T> = (0..n).map(|i| items[i % items.len()]).collect();
    for i in (1..n).rev() {
        out.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    out
}
