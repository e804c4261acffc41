//! Chains on CPU adapters: consecutive dispatches of kernels that share their tiles run as one
//! dispatch ([`mfn_compiler::chain`]), so that the driver's threads are woken and joined once a
//! chain instead of once a kernel. [`SessionOptions::chains`](crate::SessionOptions::chains).

use std::ops::Range;

use mfn_compiler::chain::{link_name, Link, CHAINED, CHAIN_WAIT};
use mfn_compiler::{Kernel, Program, Resource, TILE_SHARERS};

use crate::session::{storage_entry, texture_entry, OwnedJob, MAX_TILE_SHARERS};

/// Most kernels in one chain: a bottleneck block (expansion, depthwise, projection) with the stem
/// of MobileFaceNet before the first one fits; longer chains only make fewer, larger pipelines.
const MAX_LINKS: usize = 5;

/// Iterations of a link's wait for the units of the other threads by default (32 polls each): a
/// few milliseconds on lavapipe, against waits of a unit's length (microseconds) where no
/// thread is preempted. A link that waits longer gives up, and the batch runs again without
/// chains ([`crate::SessionOptions::chain_wait`]).
pub(crate) const DEFAULT_CHAIN_WAIT: u32 = 2048;

/// Whether a kernel is a pointwise GEMM: a chain ends before one that follows another, where one
/// bottleneck block ends and the next begins, so that the blocks of a stage share one pipeline.
fn is_gemm(k: &Kernel) -> bool {
    matches!(k.template.as_str(), "pointwise_vec4" | "pointwise")
}

/// Storage buffers a kernel binds, its tile counters included.
fn storage_buffers(k: &Kernel) -> u32 {
    k.bindings - k.textures.count_ones().min(k.bindings) + u32::from(k.tile_counters().is_some())
}

/// What a chain may spend: lavapipe ends an invocation's loops after `loop_iterations` iterations
/// in all, the subgroups have at least `lanes` invocations, a link waits at most `wait`
/// iterations, and a shader stage binds at most `max_storage` storage buffers and `max_textures`
/// sampled textures.
pub(crate) struct Budget {
    pub loop_iterations: u32,
    pub lanes: u32,
    pub wait: u32,
    pub max_storage: u32,
    pub max_textures: u32,
}

impl Budget {
    /// Loop iterations one invocation spends on the units of one sample of `step` when it takes
    /// them all: its grid's workgroups times their subgroups are at least its units (a subgroup's
    /// tile or share, or a band of an invocation in a subgroup's iteration), each of at most
    /// [`Kernel::unit_iterations`] (see the session's `Shared`).
    fn sample_iterations(&self, program: &Program, step: usize) -> u64 {
        let s = &program.steps[step];
        let k = &program.kernels[s.kernel];
        let grid = u64::from(s.workgroups[0]) * u64::from(s.workgroups[1]);
        grid * u64::from(k.workgroup_size.div_ceil(self.lanes.max(1))) * u64::from(k.unit_iterations)
    }

    /// Most samples a chain of `steps` runs in one submission: one invocation may take every unit
    /// of every link (where the other threads are late), and each link's wait and its ranges
    /// found empty spend iterations too.
    fn samples(&self, program: &Program, steps: &Range<usize>) -> usize {
        let fixed = steps.len() as u64 * u64::from(self.wait.saturating_add(MAX_TILE_SHARERS));
        let per_sample: u64 = steps.clone().map(|s| self.sample_iterations(program, s)).sum();
        (u64::from(self.loop_iterations).saturating_sub(fixed) / per_sample.max(1)) as usize
    }
}

/// The program's steps in dispatch order, grouped: a chain of two or more steps whose kernels all
/// share their tiles (in the variant that runs: `shares` of the kernel's index), whose storage
/// buffers with the chain's status word, and whose textures, stay within the budget's per shader stage, and that runs
/// at least one sample within `budget` (the most samples it runs, with it); every other step alone
/// (and 0).
fn groups(program: &Program, shares: &dyn Fn(usize) -> bool, budget: &Budget) -> Vec<(Range<usize>, usize)> {
    let kernel = |s: usize| &program.kernels[program.steps[s].kernel];
    let sharing = |s: usize| shares(program.steps[s].kernel);
    let mut groups: Vec<(Range<usize>, usize)> = Vec::new();
    let (mut storage, mut textures) = (0, 0);
    for s in 0..program.steps.len() {
        let k = kernel(s);
        let joins = groups.last().is_some_and(|(g, _)| {
            let last = kernel(g.end - 1);
            g.end == s
                && g.len() < MAX_LINKS
                && sharing(s)
                && sharing(g.end - 1)
                && !(is_gemm(k) && is_gemm(last))
                && storage + storage_buffers(k) < budget.max_storage
                && textures + k.textures.count_ones() <= budget.max_textures
                && budget.samples(program, &(g.start..s + 1)) > 0
        });
        match groups.last_mut() {
            Some((g, _)) if joins => {
                g.end = s + 1;
                storage += storage_buffers(k);
                textures += k.textures.count_ones();
            }
            _ => {
                groups.push((s..s + 1, 0));
                storage = storage_buffers(k);
                textures = k.textures.count_ones();
            }
        }
    }
    for (g, samples) in &mut groups {
        if g.len() > 1 {
            *samples = budget.samples(program, g);
        }
    }
    groups
}

/// The links of the chain of `steps`: each kernel's WGSL (`sources`, by kernel index: the form
/// that runs) and, as read-write, its storage bindings of a buffer that a step of the chain writes
/// (a buffer is never bound both read-only and writable in one dispatch).
fn links<'a>(program: &Program, steps: Range<usize>, sources: &'a [std::borrow::Cow<'a, str>]) -> Vec<Link<'a>> {
    let chain = &program.steps[steps];
    let written: Vec<Resource> = chain.iter().filter_map(|s| s.bindings.last().copied()).collect();
    chain
        .iter()
        .map(|step| {
            let k = &program.kernels[step.kernel];
            let wgsl: &str = &sources[step.kernel];
            let read_write = step
                .bindings
                .iter()
                .enumerate()
                .filter(|(i, r)| *i < 32 && !k.is_texture(*i) && matches!(r, Resource::Activation(_)) && written.contains(r))
                .fold(0u32, |mask, (i, _)| mask | 1 << i);
            Link { wgsl, bindings: k.bindings + 1, textures: k.textures, read_write }
        })
        .collect()
}

/// A session's chains: which steps run in which chain, and each distinct chain's links and bind
/// group layout.
pub(crate) struct Plan<'a> {
    /// Every step alone, or a chain of steps with the most samples it takes.
    pub groups: Vec<(Range<usize>, usize)>,
    /// Each group's chain, an index into `links` (`None`: a step alone).
    pub chain_of_group: Vec<Option<usize>>,
    /// The distinct chains (the same kernels with the same bindings made read-write).
    pub links: Vec<Vec<Link<'a>>>,
    pub layouts: Vec<wgpu::BindGroupLayout>,
}

impl<'a> Plan<'a> {
    /// The chains of `program` on `device` within `budget` (`None`: none), of the kernels that
    /// share their tiles (`shares`, by kernel index) in the form that runs (`sources`, by kernel
    /// index).
    pub fn new(device: &wgpu::Device, program: &Program, shares: &dyn Fn(usize) -> bool, sources: &'a [std::borrow::Cow<'a, str>], budget: Option<&Budget>) -> Plan<'a> {
        let groups = match budget {
            Some(budget) => groups(program, shares, budget),
            None => (0..program.steps.len()).map(|s| (s..s + 1, 0)).collect(),
        };
        let mut plan = Plan { chain_of_group: Vec::with_capacity(groups.len()), groups, links: Vec::new(), layouts: Vec::new() };
        for (g, _) in &plan.groups {
            if g.len() < 2 {
                plan.chain_of_group.push(None);
                continue;
            }
            let links = links(program, g.clone(), sources);
            let same = |other: &Vec<Link>| other.len() == links.len() && other.iter().zip(&links).all(|(a, b)| a.wgsl == b.wgsl && a.read_write == b.read_write);
            let index = plan.links.iter().position(same).unwrap_or_else(|| {
                plan.layouts.push(layout(device, &links));
                plan.links.push(links);
                plan.links.len() - 1
            });
            plan.chain_of_group.push(Some(index));
        }
        plan
    }

    /// What builds the chains' pipelines: each chain's WGSL, layout and constants (the threads
    /// sharing the tiles, every link but the last waiting for its units, at most `wait`
    /// iterations).
    pub fn jobs(&self, sharers: u32, wait: u32) -> Vec<OwnedJob> {
        self.links
            .iter()
            .zip(&self.layouts)
            .enumerate()
            .map(|(c, (links, layout))| {
                let mut constants = Vec::new();
                for i in 0..links.len() {
                    constants.push((link_name(i, TILE_SHARERS), f64::from(sharers)));
                    constants.push((link_name(i, CHAINED), if i + 1 < links.len() { 1.0 } else { 0.0 }));
                }
                constants.push((CHAIN_WAIT.to_string(), f64::from(wait)));
                OwnedJob { label: format!("chain {c}"), wgsl: mfn_compiler::chain::chain(links), layout: layout.clone(), constants }
            })
            .collect()
    }
}

/// The bind group layout of a chain: each link's bindings from its base on, as a kernel's are laid
/// out (its output and its tile counters, the last two, writable), with the storage bindings of
/// the link's read-write mask writable too; then the chain's status word.
fn layout(device: &wgpu::Device, links: &[Link]) -> wgpu::BindGroupLayout {
    let bases = mfn_compiler::chain::binding_bases(links);
    let mut entries = Vec::new();
    for (link, base) in links.iter().zip(&bases) {
        for i in 0..link.bindings {
            let writable = i + 2 >= link.bindings || (i < 32 && link.read_write & (1 << i) != 0);
            let texture = i < 32 && link.textures & (1 << i) != 0;
            entries.push(if texture { texture_entry(base + i) } else { storage_entry(base + i, !writable) });
        }
    }
    entries.push(storage_entry(bases.last().copied().unwrap_or(0), false));
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("mfn chain"), entries: &entries })
}
