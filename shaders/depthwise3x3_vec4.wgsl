// Depthwise 3x3 convolution (one filter per channel) with left padding 1 and strides of 1 or 2
// (each axis), on rows of a multiple of 4 pixels (input and output), with the fused bias/activation/
// residual epilogue. One invocation computes ROWS = 4 output rows by 8 outputs (two vec4s) of one
// channel of one sample. It walks the input rows those outputs read, (ROWS - 1) * SH + 3 of them,
// loading each once as aligned vec4s (2 vec4 and 2 floats for stride 1, 4 vec4 and a float for
// stride 2, zero outside the map), and adds each row into every output row whose filter covers
// it: 6 loads an output row instead of 12 (stride 1), and the 9 weights are loaded once for 32
// outputs.
// The shifted input vectors under each filter tap are register swizzles, and the accumulators
// are named variables: on lavapipe, which runs invocations as SIMD lanes, a local array indexed
// in a loop becomes per-lane memory traffic. The input rows are one call each with a constant
// row number, not a loop: which output rows a row feeds, and with which filter row, is then
// known at compile time (a loop added every row into all 4 output rows, with zero weights where
// the filter does not reach: twice the multiply-adds, 1.2 times the time on lavapipe).
// Layouts: x [C, H_IN, W_IN], y [C, H_OUT, W_OUT] per sample (workgroup_id.z); w is a texture
// of 3 RGBA texels a row and C rows, texel r of row c holding row r of channel c's filter (and a
// zero): on lavapipe a texel fetch is a few vector gathers, a storage-buffer load a loop over the
// SIMD lanes (256 channels at 14x14, batch 16: about 1.1 times as fast);
// p = [bias; C] ++ [prelu slope; C]. Needs W_IN % 4 == 0 and W_OUT % 4 == 0 (the compiler checks).

// Shared bands (CPU adapters): where the runtime sets SHARERS to the driver's thread count, the
// dispatch has SHARERS x 1 x N workgroups and the invocations take their bands from counters, as
// the subgroup GEMM takes its tiles (`pointwise_vec4_subgroup.wgsl`): each driver thread starts on
// its own contiguous range of the bands and then takes what the other ranges still hold, so that a
// fast core does not wait for a slow one at the end of every dispatch (128 channels at 28x28,
// batch 1, two threads: 0.8 of the time). Same bands, same sums: the results are identical.
// tiles = [next band of range r, at r * SPREAD; SHARERS], zeroed before every run.
// mfn:constants
alias stored = f32;
const C: u32 = 4u;
const H_IN: u32 = 8u;
const W_IN: u32 = 8u;
const H_OUT: u32 = 8u;
const W_OUT: u32 = 8u;
const SH: u32 = 1u;
const SW: u32 = 1u;
const PAD_T: u32 = 1u;
const ACT: u32 = 0u;
const CLIP_MIN: f32 = 0.0;
const CLIP_MAX: f32 = 6.0;
const HAS_RESIDUAL: bool = false;
const WG: u32 = 64u;
// mfn:end-constants

// How activations are read and written: as here, vectors of the stored type; on CPU adapters
// with 64-bit integers, the runtime replaces this block with one that moves the same bits as
// 64-bit integers (mfn_compiler::wide): a vec4 as vec2<u64>, 2 components a lane instead of 4,
// and the first or the last element of an input vec4 alone as the u64 that holds it (on
// lavapipe every component of a load or store is a step of a loop over the lanes: the whole
// model at batch 1 in 0.98 of the time).
// mfn:loads
alias packed4 = vec4<stored>;
fn unpack4(v: packed4) -> vec4<f32> {
    return vec4<f32>(v);
}
fn pack4(v: vec4<f32>) -> packed4 {
    return packed4(v);
}
fn x_first(i: u32) -> f32 {
    return f32(x[i].x);
}
fn x_last(i: u32) -> f32 {
    return f32(x[i].w);
}
// mfn:end-loads

/// Output rows one invocation computes.
const ROWS: u32 = 4u;
const W_IN4: u32 = W_IN / 4u;
const W_OUT4: u32 = W_OUT / 4u;
/// Invocations per band of ROWS output rows: 8 outputs (2 vec4) each.
const OX_CHUNKS: u32 = (W_OUT4 + 1u) / 2u;
const OY_CHUNKS: u32 = (H_OUT + ROWS - 1u) / ROWS;
const THREADS: u32 = C * OY_CHUNKS * OX_CHUNKS;
/// Input rows the ROWS output rows read.
const IN_ROWS: u32 = (ROWS - 1u) * SH + 3u;
// `main` walks at most 9 input rows: vertical strides 1 and 2 (the compiler checks).
const_assert IN_ROWS <= 9u;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<packed4>;
@group(0) @binding(1) var w: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<packed4>;
@group(0) @binding(4) var<storage, read_write> y: array<packed4>;

/// A channel's epilogue parameters, loaded once for all the outputs of the channel an
/// invocation writes (on lavapipe every load is a per-lane loop).
struct Channel {
    bias: f32,
    slope: f32,
}

fn channel(c: u32) -> Channel {
    return Channel(p[c], p[C + c]);
}

fn epilogue(acc: vec4<f32>, ch: Channel, i: u32) -> vec4<f32> {
    var v = acc + ch.bias;
    if ACT == ACT_RELU { v = max(v, vec4(0.0)); }
    if ACT == ACT_PRELU { v = select(v * ch.slope, v, v >= vec4(0.0)); }
    if ACT == ACT_CLIP { v = clamp(v, vec4(CLIP_MIN), vec4(CLIP_MAX)); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    if HAS_RESIDUAL { v += unpack4(r[i]); }
    return v;
}

/// The index in x of input row `row` (vec4 index) at vec4 column `q`, clamped into the row.
fn at(row: u32, q: i32) -> u32 {
    return row + u32(clamp(q, 0, i32(W_IN4) - 1));
}

/// Whether vec4 column `q` of a row (`row_ok`: inside the map) is inside the map.
fn inside(q: i32, row_ok: bool) -> bool {
    return row_ok && q >= 0 && q < i32(W_IN4);
}

/// The vec4 of input row `row` at vec4 column `q`, zero outside the map.
fn load(row: u32, q: i32, row_ok: bool) -> vec4<f32> {
    return select(vec4(0.0), unpack4(x[at(row, q)]), inside(q, row_ok));
}

/// The first (x) or the last (w) input of that vec4 alone, for the columns just left and right
/// of an invocation's outputs, where only one input is needed: on lavapipe a load costs by the
/// component (a per-lane loop), and stride 1 then loads 2 vec4 and 2 floats a row instead of 4
/// vec4 (the 64-channel 56x56 layer, batch 16: 1.13 to 1.2 times as fast).
fn load_first(row: u32, q: i32, row_ok: bool) -> f32 {
    return select(0.0, x_first(at(row, q)), inside(q, row_ok));
}

fn load_last(row: u32, q: i32, row_ok: bool) -> f32 {
    return select(0.0, x_last(at(row, q)), inside(q, row_ok));
}

/// The filter's weights, a row each: (w[ky][0], w[ky][1], w[ky][2]).
struct Filter {
    k0: vec3<f32>,
    k1: vec3<f32>,
    k2: vec3<f32>,
}

/// The accumulators: a<row><half> holds output row oy0 + row, output vec4 `half` of the
/// invocation's 8 outputs.
struct Acc {
    a00: vec4<f32>,
    a01: vec4<f32>,
    a10: vec4<f32>,
    a11: vec4<f32>,
    a20: vec4<f32>,
    a21: vec4<f32>,
    a30: vec4<f32>,
    a31: vec4<f32>,
}

/// acc + the three taps of a filter row over the inputs at offsets -1, 0, +1.
fn taps(acc: vec4<f32>, left: vec4<f32>, mid: vec4<f32>, right: vec4<f32>, k: vec3<f32>) -> vec4<f32> {
    return fma(left, vec4(k.x), fma(mid, vec4(k.y), fma(right, vec4(k.z), acc)));
}

/// acc + filter row `ky` over the inputs at offsets -1, 0, +1; acc itself where `ky` is outside
/// the filter (the input row is above or below what this output row reads). `ky` is a constant
/// in every call once the shader is inlined, so the branch and the filter row are resolved at
/// compile time and no multiply-add by a zero weight is left.
fn row_taps(acc: vec4<f32>, left: vec4<f32>, mid: vec4<f32>, right: vec4<f32>, f: Filter, ky: i32) -> vec4<f32> {
    if ky < 0 || ky > 2 {
        return acc;
    }
    return taps(acc, left, mid, right, select(select(f.k2, f.k1, ky == 1), f.k0, ky == 0));
}

/// Writes output vec4 `q` of row `oy`.
fn put(acc: vec4<f32>, c: u32, ch: Channel, oy: u32, q: u32, sample: u32, live: bool) {
    let i = ((sample * C + c) * H_OUT + oy) * W_OUT4 + q;
    if live && oy < H_OUT && q < W_OUT4 {
        y[i] = pack4(epilogue(acc, ch, i));
    }
}

/// `a` plus input row oy0 * SH + ir - PAD_T of the invocation's channel (element `x0` of
/// row 0), added into every output row whose filter covers it.
fn step(a: Acc, ir: u32, oy0: u32, q0: u32, x0: u32, f: Filter) -> Acc {
    let iy = i32(oy0 * SH + ir) - i32(PAD_T);
    let row_ok = iy >= 0 && iy < i32(H_IN);
    let row = x0 + u32(clamp(iy, 0, i32(H_IN) - 1)) * W_IN4;
    // The inputs under output vec4 `half` at horizontal offsets -1, 0, +1 (padding 1).
    var l0: vec4<f32>;
    var m0: vec4<f32>;
    var r0: vec4<f32>;
    var l1: vec4<f32>;
    var m1: vec4<f32>;
    var r1: vec4<f32>;
    if SW == 1u {
        let l = load_last(row, i32(q0) - 1, row_ok);
        let a = load(row, i32(q0), row_ok);
        let b = load(row, i32(q0) + 1, row_ok);
        let e = load_first(row, i32(q0) + 2, row_ok);
        l0 = vec4(l, a.xyz);
        m0 = a;
        r0 = vec4(a.yzw, b.x);
        l1 = vec4(a.w, b.xyz);
        m1 = b;
        r1 = vec4(b.yzw, e);
    } else {
        let q = 2 * i32(q0);
        let l = load_last(row, q - 1, row_ok);
        let v0 = load(row, q, row_ok);
        let v1 = load(row, q + 1, row_ok);
        let v2 = load(row, q + 2, row_ok);
        let v3 = load(row, q + 3, row_ok);
        l0 = vec4(l, v0.y, v0.w, v1.y);
        m0 = vec4(v0.x, v0.z, v1.x, v1.z);
        r0 = vec4(v0.y, v0.w, v1.y, v1.w);
        l1 = vec4(v1.w, v2.y, v2.w, v3.y);
        m1 = vec4(v2.x, v2.z, v3.x, v3.z);
        r1 = vec4(v2.y, v2.w, v3.y, v3.w);
    }
    let k = i32(ir);
    let s = i32(SH);
    return Acc(
        row_taps(a.a00, l0, m0, r0, f, k), row_taps(a.a01, l1, m1, r1, f, k),
        row_taps(a.a10, l0, m0, r0, f, k - s), row_taps(a.a11, l1, m1, r1, f, k - s),
        row_taps(a.a20, l0, m0, r0, f, k - 2 * s), row_taps(a.a21, l1, m1, r1, f, k - 2 * s),
        row_taps(a.a30, l0, m0, r0, f, k - 3 * s), row_taps(a.a31, l1, m1, r1, f, k - 3 * s),
    );
}

/// The band `t0` of sample `sample`: ROWS output rows by 8 outputs of one channel. Spare
/// invocations of the grid's last workgroup (t0 >= THREADS) compute the last band again and store
/// nothing.
fn band(t0: u32, sample: u32) {
    let live = t0 < THREADS;
    let t = min(t0, THREADS - 1u);
    let c = t / (OY_CHUNKS * OX_CHUNKS);
    let oy0 = ((t / OX_CHUNKS) % OY_CHUNKS) * ROWS;
    let q0 = (t % OX_CHUNKS) * 2u;
    let x0 = (sample * C + c) * H_IN * W_IN4;
    let f = Filter(textureLoad(w, vec2(0u, c), 0).xyz, textureLoad(w, vec2(1u, c), 0).xyz, textureLoad(w, vec2(2u, c), 0).xyz);
    // Every input row the band reads, one call each (a constant row: see `row_taps`).
    var a = Acc();
    a = step(a, 0u, oy0, q0, x0, f);
    a = step(a, 1u, oy0, q0, x0, f);
    a = step(a, 2u, oy0, q0, x0, f);
    a = step(a, 3u, oy0, q0, x0, f);
    a = step(a, 4u, oy0, q0, x0, f);
    a = step(a, 5u, oy0, q0, x0, f);
    if IN_ROWS > 6u {
        a = step(a, 6u, oy0, q0, x0, f);
        a = step(a, 7u, oy0, q0, x0, f);
        a = step(a, 8u, oy0, q0, x0, f);
    }
    let ch = channel(c);
    put(a.a00, c, ch, oy0, q0, sample, live);
    put(a.a01, c, ch, oy0, q0 + 1u, sample, live);
    put(a.a10, c, ch, oy0 + 1u, q0, sample, live);
    put(a.a11, c, ch, oy0 + 1u, q0 + 1u, sample, live);
    put(a.a20, c, ch, oy0 + 2u, q0, sample, live);
    put(a.a21, c, ch, oy0 + 2u, q0 + 1u, sample, live);
    put(a.a30, c, ch, oy0 + 3u, q0, sample, live);
    put(a.a31, c, ch, oy0 + 3u, q0 + 1u, sample, live);
}

/// Threads of the driver sharing the bands (set by the runtime through a pipeline constant); 0:
/// the workgroup grid gives the bands.
override SHARERS: u32 = 0u;
/// Counters a cache line (64 bytes) apart, so that threads taking bands from their own ranges do
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
        @builtin(local_invocation_index) lid: u32) {
    // Shared bands: the list runs sample after sample; range r is its r-th SHARERS-th, and this
    // workgroup starts on the range of the thread that runs it (lavapipe gives thread r the r-th
    // contiguous share of the workgroups, in the order x, then z). Every invocation takes its own
    // band from the counter.
    // SHARERS itself, kept from 0 so that the divisions below stay valid where the constant is 0
    // (naga rejects a division by a constant zero).
    let ranges = max(SHARERS, 1u);
    let total = nwg.z * THREADS;
    let workgroups = nwg.x * nwg.z;
    var r = (wid.x + wid.z * nwg.x) * ranges / workgroups;
    // Ranges found empty; every iteration takes a band or finds one more range empty (on the grid,
    // one iteration), until UNIT_CAP bands are taken. The body is called once, in this loop, for
    // both: a second call would double the shader the driver compiles before it drops the path that
    // the constant rules out.
    var empty = 0u;
    // Units this invocation took (at most UNIT_CAP).
    var units = 0u;
    loop {
        if empty >= ranges || units >= UNIT_CAP {
            break;
        }
        var t: u32;
        var sample: u32;
        if SHARERS == 0u {
            t = (wid.x + wid.y * nwg.x) * WG + lid;
            sample = wid.z;
            empty = ranges;
        } else {
            let at = total * r / ranges + atomicAdd(&tiles[r * SPREAD], 1u);
            if at >= total * (r + 1u) / ranges {
                empty += 1u;
                r = (r + 1u) % ranges;
                continue;
            }
            units += 1u;
            t = at % THREADS;
            sample = at / THREADS;
        }
        band(t, sample);
        if CHAINED {
            atomicAdd(&tiles[DONE], 1u);
        }
    }
    units_total = total;
}
