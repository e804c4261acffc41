// Pointwise (1x1, stride 1, no padding) convolution for feature maps of any size, with the inputs
// shared across a subgroup: `pointwise.wgsl` dispatch for dispatch (same tiles, workgroups and
// packed weights), for devices with subgroups of at least 8 invocations. Every invocation of a
// workgroup needs the same 16 pixels of each input channel, so invocation i of the subgroup loads
// pixels p0 + i % 8 and p0 + 8 + i % 8 and takes the other 14 from its neighbours with
// subgroupBroadcast: per input channel one vec4 load of weights and two scalar loads of inputs
// for 64 multiply-adds. The accumulators are updated pixel after pixel, each taking the
// iteration's 4 input channels at once (see `pointwise.wgsl`).
// Layouts: x [C_IN, HW], y [C_OUT, HW] per sample (workgroup_id.z); w is a texture of CO4 RGBA
// texels a row and C_IN rows, texel j of row ci holding the weights of output channels 4j .. 4j + 3
// for input channel ci (zero-padded), so an invocation's 4 weights are one texel (on lavapipe a
// few vector gathers, where a storage-buffer load is a loop over the SIMD lanes);
// p = [bias; C_OUT] ++ [prelu slope; C_OUT].

// Shared tiles (CPU adapters): where the runtime sets SHARERS to the driver's thread count, the
// dispatch has SHARERS x 1 x N workgroups, and each subgroup takes from counters the share of a
// grid workgroup that one subgroup would have computed there (its lanes the same invocations, so
// the subgroupBroadcasts share the same values), as the subgroup GEMM takes its tiles
// (`pointwise_vec4_subgroup.wgsl`): same work, same sums, identical results.
// tiles = [next unit of range r, at r * SPREAD; SHARERS], zeroed before every run.
// mfn:constants
alias stored = f32;
const C_IN: u32 = 8u;
const C_OUT: u32 = 8u;
const HW: u32 = 16u;
const ACT: u32 = 0u;
const CLIP_MIN: f32 = 0.0;
const CLIP_MAX: f32 = 6.0;
const HAS_RESIDUAL: bool = false;
const WG: u32 = 64u;
// mfn:end-constants

/// Pixels an invocation computes.
const PX: u32 = 16u;
/// Groups of 4 output channels: one an invocation.
const CO4: u32 = (C_OUT + 3u) / 4u;
/// Workgroups across the output channels, and across the pixels.
const CO_GROUPS: u32 = (CO4 + WG - 1u) / WG;
const PX_GROUPS: u32 = (HW + PX - 1u) / PX;
/// Workgroups of the grid, per sample.
const GRID: u32 = CO_GROUPS * PX_GROUPS;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<stored>;
@group(0) @binding(1) var w: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<stored>;
@group(0) @binding(4) var<storage, read_write> y: array<stored>;

/// A channel's epilogue parameters (bias and PReLU slope).
struct Channel {
    bias: f32,
    slope: f32,
}

/// The epilogue parameters of output channels co .. co + 3 (clamped to the last), loaded once for
/// all the outputs of those channels an invocation writes (on lavapipe every load is a per-lane
/// loop).
struct Quad {
    bias: vec4<f32>,
    slope: vec4<f32>,
}

fn quad(co: u32) -> Quad {
    let i = min(vec4(co) + vec4(0u, 1u, 2u, 3u), vec4(C_OUT - 1u));
    return Quad(vec4(p[i.x], p[i.y], p[i.z], p[i.w]), vec4(p[C_OUT + i.x], p[C_OUT + i.y], p[C_OUT + i.z], p[C_OUT + i.w]));
}

/// Channel j of a quad.
fn member(q: Quad, j: u32) -> Channel {
    return Channel(q.bias[j], q.slope[j]);
}

fn epilogue(acc: f32, ch: Channel, i: u32) -> f32 {
    var v = acc + ch.bias;
    if ACT == ACT_RELU { v = max(v, 0.0); }
    if ACT == ACT_PRELU { v = select(v * ch.slope, v, v >= 0.0); }
    if ACT == ACT_CLIP { v = clamp(v, CLIP_MIN, CLIP_MAX); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    if HAS_RESIDUAL { v += f32(r[i]); }
    return v;
}

/// The accumulators of an invocation: column k of `m<i>` holds its 4 output channels at pixel
/// p0 + 4i + k.
struct Tile {
    m0: mat4x4<f32>,
    m1: mat4x4<f32>,
    m2: mat4x4<f32>,
    m3: mat4x4<f32>,
}

/// The workgroup's 16 pixels of one input channel: v<i> holds pixels p0 + 4i .. p0 + 4i + 3.
struct Pixels {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
}

/// Where an invocation reads: its pixels p0 + lane % 8 (`x`) and p0 + 8 + lane % 8 (`x8`) of
/// input channel 0 of its sample, and its group of 4 output channels.
struct At {
    x: u32,
    x8: u32,
    co4: u32,
}

/// acc (4 output channels at one pixel) + the pixel's 4 input channels `xs` times their weights,
/// channel after channel.
fn dot4(acc: vec4<f32>, xs: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) -> vec4<f32> {
    return fma(vec4(xs.w), w3, fma(vec4(xs.z), w2, fma(vec4(xs.y), w1, fma(vec4(xs.x), w0, acc))));
}

/// The accumulators of 4 pixels plus 4 input channels, pixel after pixel; column c of `xs` holds
/// the 4 pixels of input channel c.
fn mac(acc: mat4x4<f32>, xs: mat4x4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) -> mat4x4<f32> {
    let px = transpose(xs);
    return mat4x4(dot4(acc[0], px[0], w0, w1, w2, w3), dot4(acc[1], px[1], w0, w1, w2, w3),
                  dot4(acc[2], px[2], w0, w1, w2, w3), dot4(acc[3], px[3], w0, w1, w2, w3));
}

/// `t` plus input channels ci .. ci + 3 (`n` of them; the others' weights read as zero).
fn accumulate(t: Tile, ci: u32, n: u32, at: At) -> Tile {
    let w0 = weights(ci, at);
    let w1 = select(vec4(0.0), weights(min(ci + 1u, C_IN - 1u), at), n > 1u);
    let w2 = select(vec4(0.0), weights(min(ci + 2u, C_IN - 1u), at), n > 2u);
    let w3 = select(vec4(0.0), weights(min(ci + 3u, C_IN - 1u), at), n > 3u);
    let x0 = pixels(ci, at);
    let x1 = pixels(min(ci + 1u, C_IN - 1u), at);
    let x2 = pixels(min(ci + 2u, C_IN - 1u), at);
    let x3 = pixels(min(ci + 3u, C_IN - 1u), at);
    return Tile(mac(t.m0, mat4x4(x0.v0, x1.v0, x2.v0, x3.v0), w0, w1, w2, w3),
                mac(t.m1, mat4x4(x0.v1, x1.v1, x2.v1, x3.v1), w0, w1, w2, w3),
                mac(t.m2, mat4x4(x0.v2, x1.v2, x2.v2, x3.v2), w0, w1, w2, w3),
                mac(t.m3, mat4x4(x0.v3, x1.v3, x2.v3, x3.v3), w0, w1, w2, w3));
}

/// The invocation's 4 weights of input channel `ci`.
fn weights(ci: u32, at: At) -> vec4<f32> {
    return textureLoad(w, vec2(at.co4, ci), 0);
}

/// Writes the invocation's channels (those below C_OUT) at pixels p .. p + 3 (those inside the map).
fn put(acc: mat4x4<f32>, co4: u32, q: Quad, p: u32, sample: u32, live: bool) {
    for (var k = 0u; k < 4u; k++) {
        for (var j = 0u; j < 4u; j++) {
            let co = 4u * co4 + j;
            let i = (sample * C_OUT + co) * HW + p + k;
            if live && co < C_OUT && p + k < HW {
                y[i] = stored(epilogue(acc[k][j], member(q, j), i));
            }
        }
    }
}

/// The 4 pixels of a value that lanes 0 .. 3 of the subgroup hold (subgroupBroadcast takes a
/// constant lane).
fn lanes_lo(v: f32) -> vec4<f32> {
    return vec4(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u));
}

/// The same for lanes 4 .. 7.
fn lanes_hi(v: f32) -> vec4<f32> {
    return vec4(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
}

/// The workgroup's pixels p0 .. p0 + 15 of input channel `ci` (past the map's end, its last pixel):
/// this invocation loads two of them, the others come from its neighbours.
fn pixels(ci: u32, at: At) -> Pixels {
    let a = f32(x[at.x + ci * HW]);
    let b = f32(x[at.x8 + ci * HW]);
    return Pixels(lanes_lo(a), lanes_hi(a), lanes_lo(b), lanes_hi(b));
}

/// Grid workgroup `g`'s invocation `lid` (subgroup lane `lane`) for sample `sample_index`; `real`:
/// an invocation of the workgroup (else it stores nothing).
fn work(g: u32, lid: u32, lane: u32, sample_index: u32, real: bool) {
    // The pixels are the workgroup's, the channels the invocation's. Spare invocations compute
    // clamped channels and store nothing.
    let p0 = (g % PX_GROUPS) * PX;
    let co4 = min(g / PX_GROUPS, CO_GROUPS - 1u) * WG + lid;
    let live = real && g < CO_GROUPS * PX_GROUPS && co4 < CO4;
    let sample = sample_index * C_IN * HW;
    let at = At(sample + min(p0 + lane % 8u, HW - 1u), sample + min(p0 + 8u + lane % 8u, HW - 1u), min(co4, CO4 - 1u));
    // Four input channels an iteration: the loop-carried tile is written once per iteration
    // (lavapipe masks every write to a variable that lives across iterations).
    var t = Tile();
    for (var ci = 0u; ci + 4u <= C_IN; ci += 4u) {
        t = accumulate(t, ci, 4u, at);
    }
    if C_IN % 4u != 0u {
        t = accumulate(t, C_IN - C_IN % 4u, C_IN % 4u, at);
    }
    let q = quad(4u * min(co4, CO4 - 1u));
    put(t.m0, co4, q, p0, sample_index, live);
    put(t.m1, co4, q, p0 + 4u, sample_index, live);
    put(t.m2, co4, q, p0 + 8u, sample_index, live);
    put(t.m3, co4, q, p0 + 12u, sample_index, live);
}

/// Threads of the driver sharing the tiles (set by the runtime through a pipeline constant); 0:
/// the workgroup grid gives the tiles.
override SHARERS: u32 = 0u;
/// Counters a cache line (64 bytes) apart, so that threads taking units from their own ranges do
/// not contend for one line.
const SPREAD: u32 = 16u;
/// Most units one invocation takes from the counters (set by the runtime with SHARERS): a CPU
/// driver may end every loop of an invocation once its loops have run a fixed number of
/// iterations in all (lavapipe: 65535), so an invocation that took every tile of a large batch
/// would leave the last ones half computed. The runtime dispatches enough workgroups that the
/// capped invocations take every unit between them (`Kernel::unit_iterations`).
override UNIT_CAP: u32 = 4294967295u;

@group(0) @binding(5) var<storage, read_write> tiles: array<atomic<u32>>;

/// Chains (CPU adapters, `mfn_compiler::chain`): where the runtime runs this kernel as a link of a
/// chain of kernels in one dispatch it sets CHAINED. Every unit then counts itself done at DONE
/// (past the threads' counters of the slot), and the chain waits until `units_total` of them are
/// done before it calls the next link, which reads what this one writes.
override CHAINED: bool = false;
const DONE: u32 = 16u * SPREAD;
/// The units of the dispatch (set by `main`), for a chain's wait.
var<private> units_total: u32;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) lanes: u32) {
    // Shared tiles: a unit is the share of one grid workgroup that a subgroup computes (lanes
    // lid = s * lanes + lane); the list runs sample after sample, workgroup after workgroup.
    // Range r is its r-th SHARERS-th; this workgroup starts on the range of the thread that runs
    // it (see `pointwise_vec4_subgroup.wgsl`).
    // SHARERS itself, kept from 0 so that the divisions below stay valid where the constant is 0
    // (naga rejects a division by a constant zero).
    let ranges = max(SHARERS, 1u);
    let per_wg = (WG + lanes - 1u) / lanes;
    let per_sample = GRID * per_wg;
    let total = nwg.z * per_sample;
    let workgroups = nwg.x * nwg.z;
    var r = (wid.x + wid.z * nwg.x) * ranges / workgroups;
    // Ranges found empty; every iteration takes a unit or finds one more range empty (on the grid,
    // one iteration), until UNIT_CAP units are taken. The body is called once, in this loop, for
    // both: a second call would double the shader the driver compiles before it drops the path that
    // the constant rules out.
    var empty = 0u;
    // Units this invocation took (at most UNIT_CAP).
    var units = 0u;
    loop {
        if empty >= ranges || units >= UNIT_CAP {
            break;
        }
        var g: u32;
        var l: u32;
        var sample: u32;
        if SHARERS == 0u {
            g = wid.x + wid.y * nwg.x;
            l = lid;
            sample = wid.z;
            empty = ranges;
        } else {
            var taken = 0u;
            if lane == 0u {
                taken = atomicAdd(&tiles[r * SPREAD], 1u);
            }
            let at = total * r / ranges + subgroupBroadcast(taken, 0u);
            if at >= total * (r + 1u) / ranges {
                empty += 1u;
                r = (r + 1u) % ranges;
                continue;
            }
            units += 1u;
            let unit = at % per_sample;
            g = unit / per_wg;
            l = (unit % per_wg) * lanes + lane;
            sample = at / per_sample;
        }
        // Lanes past the workgroup's size (subgroups that do not divide it) store nothing.
        work(g, min(l, WG - 1u), lane, sample, l < WG);
        if CHAINED && lane == 0u {
            atomicAdd(&tiles[DONE], 1u);
        }
    }
    units_total = total;
}
