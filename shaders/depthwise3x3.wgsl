// Depthwise 3x3 convolution (one filter per channel) with left padding 1 and strides of 1 or 2
// (each axis), on rows of any width, with the fused bias/activation/residual epilogue: the scheme of
// `depthwise3x3_vec4.wgsl` (which needs rows of a multiple of 4 pixels) with loads of pairs of
// elements (x is read as vec2s, whatever the parity of a row's start) and scalar stores. One
// invocation computes ROWS = 4 output rows by 8 outputs of one channel of one sample. It walks
// the input rows those outputs read, (ROWS - 1) * SH + 3 of them, loading each once (the 10 or 17
// values under the 8 outputs as 6 or 9 pairs, zero outside the map) and adding it into every
// output row whose filter covers it; the 9 weights are loaded once for 32 outputs.
// The accumulators are named variables: on lavapipe, which runs invocations as SIMD lanes, a
// local array indexed in a loop becomes per-lane memory traffic. The input rows are one call
// each with a constant row number (see `depthwise3x3_vec4.wgsl`).
// Layouts: x [C, IN_PLANE], y [C, OUT_PLANE] per sample (workgroup_id.z), a channel's rows at the
// start of its plane (a plane is the map's pixels, or more where the compiler pads the map to a
// multiple of 4 pixels for the vec4 pointwise kernels: compiler/src/codegen/layout.rs; the
// padding is neither read nor written here); w is a texture
// of 3 RGBA texels a row and C rows, texel r of row c holding row r of channel c's filter (and a
// zero): on lavapipe a texel fetch is a few vector gathers, a storage-buffer load a loop over the
// SIMD lanes (256 channels at 14x14, batch 16: about 1.1 times as fast);
// p = [bias; C] ++ [prelu slope; C].
// y is written OUT_VEC outputs of a row at a time (out_t: quads where the rows hold a multiple of
// 4 outputs, pairs where an even number, else scalars): on lavapipe a store, like a load, is a
// loop over the SIMD lanes whose cost is mostly per lane (256 channels at 14x14, batch 16:
// 4.48 -> 3.55 ms with pairs instead of scalars).

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
alias out_t = vec4<stored>;
const LANE: out_t = out_t(0.0, 1.0, 2.0, 3.0);
const OUT_VEC: u32 = 4u;
const IN_PLANE: u32 = 64u;
const OUT_PLANE: u32 = 64u;
// mfn:end-constants

// How the input is read: as here, pairs of the stored type; on CPU adapters with 64-bit integers,
// the runtime replaces this block with one that reads the same bits as one 64-bit integer (a
// 32-bit one in f16), 1 component a lane instead of 2 (mfn_compiler::wide; on lavapipe every
// component of a load is a step of a loop over the lanes: the whole model at batch 1 in 0.99 of
// the time, at batch 16 0.96 to 0.99).
// mfn:loads
alias packed2 = vec2<stored>;
fn unpack2(v: packed2) -> vec2<f32> {
    return vec2<f32>(v);
}
// mfn:end-loads

/// Output rows one invocation computes.
const ROWS: u32 = 4u;
/// Invocations per band of ROWS output rows: 8 outputs each.
const OX_CHUNKS: u32 = (W_OUT + 7u) / 8u;
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

@group(0) @binding(0) var<storage, read> x: array<packed2>;
@group(0) @binding(1) var w: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<stored>;
@group(0) @binding(4) var<storage, read_write> y: array<out_t>;

/// A channel's epilogue parameters, loaded once for all the outputs of the channel an
/// invocation writes (on lavapipe every load is a per-lane loop).
struct Channel {
    bias: f32,
    slope: f32,
}

fn channel(c: u32) -> Channel {
    return Channel(p[c], p[C + c]);
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

/// Pair `k` of the input (elements 2k and 2k + 1 of x as a flat array), clamped to the binding.
fn pair(k: i32) -> vec2<f32> {
    return unpack2(x[u32(clamp(k, 0, i32(arrayLength(&x)) - 1))]);
}

/// Input columns ix and ix + 1 of a row, zero outside the map, from the pairs `p` and `q` = the
/// next: where the row's columns start at an odd element (`odd`), p holds column ix as its second
/// element, else as its first.
fn cols(p: vec2<f32>, q: vec2<f32>, odd: bool, ix: i32, row_ok: bool) -> vec2<f32> {
    let v = select(p, vec2(p.y, q.x), odd);
    let inside = vec2((ix >= 0) && (ix < i32(W_IN)), (ix + 1 >= 0) && (ix + 1 < i32(W_IN)));
    return select(vec2(0.0), v, inside & vec2(row_ok));
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

/// The first OUT_VEC components of `v` as an element of y (component k of LANE holds k).
fn out_vec(v: vec4<f32>) -> out_t {
    var o = out_t(stored(v.x));
    o = select(o, out_t(stored(v.y)), LANE == out_t(1.0));
    o = select(o, out_t(stored(v.z)), LANE == out_t(2.0));
    return select(o, out_t(stored(v.w)), LANE == out_t(3.0));
}

/// Writes `v`, outputs i .. i + 3 of y (4 consecutive outputs of a row of one channel) through
/// the epilogue, those whose component of `valid` is true: as one quad, two pairs or 4 scalars
/// (OUT_VEC; a quad or pair is valid as a whole).
fn put4(v: vec4<f32>, ch: Channel, i: u32, valid: vec4<bool>) {
    let e = vec4(epilogue(v.x, ch, i), epilogue(v.y, ch, i + 1u), epilogue(v.z, ch, i + 2u), epilogue(v.w, ch, i + 3u));
    if OUT_VEC == 4u {
        if valid.x { y[i / 4u] = out_vec(e); }
    } else if OUT_VEC == 2u {
        if valid.x { y[i / 2u] = out_vec(e); }
        if valid.z { y[i / 2u + 1u] = out_vec(e.zwzw); }
    } else {
        if valid.x { y[i] = out_vec(e); }
        if valid.y { y[i + 1u] = out_vec(e.yyyy); }
        if valid.z { y[i + 2u] = out_vec(e.zzzz); }
        if valid.w { y[i + 3u] = out_vec(e.wwww); }
    }
}

/// Writes outputs ox .. ox + 3 of row `oy` of channel `c` from `acc` (those inside the map).
fn put(acc: vec4<f32>, c: u32, ch: Channel, oy: u32, ox: u32, sample: u32, live: bool) {
    let row = (sample * C + c) * OUT_PLANE + oy * W_OUT;
    let valid = (vec4(ox) + vec4(0u, 1u, 2u, 3u) < vec4(W_OUT)) & vec4(live && oy < H_OUT);
    put4(acc, ch, row + ox, valid);
}

/// `a` plus input row oy0 * SH + ir - PAD_T of the invocation's channel (element `x0` of
/// row 0), added into every output row whose filter covers it.
fn step(a: Acc, ir: u32, oy0: u32, ox0: u32, x0: u32, f: Filter) -> Acc {
    let iy = i32(oy0 * SH + ir) - i32(PAD_T);
    let row_ok = iy >= 0 && iy < i32(H_IN);
    let row = x0 + u32(clamp(iy, 0, i32(H_IN) - 1)) * W_IN;
    // The inputs under outputs ox0 + 4 * half .. + 3 at horizontal offsets -1, 0, +1
    // (padding 1): input columns ix0 - 1 + SW * j + offset, read as pairs of elements from the
    // one that holds column ix0 - 1 (element e) on: on lavapipe a load is a loop over the SIMD
    // lanes with a cost per load and a smaller one per component, so pairs instead of single
    // elements (batch 16: 256 channels 28x28 -> 14x14 1.2 to 1.4 times as fast, 14x14 about 1.07,
    // 7x7 unchanged).
    let ix0 = i32(ox0 * SW);
    let e = i32(row) + ix0 - 1;
    let first = e >> 1u;
    let odd = (e & 1) != 0;
    // c<j>: columns ix0 - 1 + 2j and ix0 + 2j (stride 2: ix0 + 15 alone in c8), the first 5
    // from 6 pairs, all that stride 1 reads.
    let q0 = pair(first);
    let q1 = pair(first + 1);
    let q2 = pair(first + 2);
    let q3 = pair(first + 3);
    let q4 = pair(first + 4);
    let q5 = pair(first + 5);
    let c0 = cols(q0, q1, odd, ix0 - 1, row_ok);
    let c1 = cols(q1, q2, odd, ix0 + 1, row_ok);
    let c2 = cols(q2, q3, odd, ix0 + 3, row_ok);
    let c3 = cols(q3, q4, odd, ix0 + 5, row_ok);
    let c4 = cols(q4, q5, odd, ix0 + 7, row_ok);
    var l0: vec4<f32>;
    var m0: vec4<f32>;
    var r0: vec4<f32>;
    var l1: vec4<f32>;
    var m1: vec4<f32>;
    var r1: vec4<f32>;
    if SW == 1u {
        l0 = vec4(c0, c1);
        m0 = vec4(c0.y, c1, c2.x);
        r0 = vec4(c1, c2);
        l1 = vec4(c2, c3);
        m1 = vec4(c2.y, c3, c4.x);
        r1 = vec4(c3, c4);
    } else {
        // Stride 2: 3 more pairs; x holds the odd offsets, y the even ones.
        let q6 = pair(first + 6);
        let q7 = pair(first + 7);
        let q8 = pair(first + 8);
        let c5 = cols(q5, q6, odd, ix0 + 9, row_ok);
        let c6 = cols(q6, q7, odd, ix0 + 11, row_ok);
        let c7 = cols(q7, q8, odd, ix0 + 13, row_ok);
        // Column ix0 + 15 only: the second pair is not read.
        let c8 = cols(q8, q8, odd, ix0 + 15, row_ok);
        l0 = vec4(c0.x, c1.x, c2.x, c3.x);
        m0 = vec4(c0.y, c1.y, c2.y, c3.y);
        r0 = vec4(c1.x, c2.x, c3.x, c4.x);
        l1 = vec4(c4.x, c5.x, c6.x, c7.x);
        m1 = vec4(c4.y, c5.y, c6.y, c7.y);
        r1 = vec4(c5.x, c6.x, c7.x, c8.x);
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
    let ox0 = (t % OX_CHUNKS) * 8u;
    let x0 = (sample * C + c) * IN_PLANE;
    let f = Filter(textureLoad(w, vec2(0u, c), 0).xyz, textureLoad(w, vec2(1u, c), 0).xyz, textureLoad(w, vec2(2u, c), 0).xyz);
    // Every input row the band reads, one call each (a constant row: see `row_taps`).
    var a = Acc();
    a = step(a, 0u, oy0, ox0, x0, f);
    a = step(a, 1u, oy0, ox0, x0, f);
    a = step(a, 2u, oy0, ox0, x0, f);
    a = step(a, 3u, oy0, ox0, x0, f);
    a = step(a, 4u, oy0, ox0, x0, f);
    a = step(a, 5u, oy0, ox0, x0, f);
    if IN_ROWS > 6u {
        a = step(a, 6u, oy0, ox0, x0, f);
        a = step(a, 7u, oy0, ox0, x0, f);
        a = step(a, 8u, oy0, ox0, x0, f);
    }
    let ch = channel(c);
    put(a.a00, c, ch, oy0, ox0, sample, live);
    put(a.a01, c, ch, oy0, ox0 + 4u, sample, live);
    put(a.a10, c, ch, oy0 + 1u, ox0, sample, live);
    put(a.a11, c, ch, oy0 + 1u, ox0 + 4u, sample, live);
    put(a.a20, c, ch, oy0 + 2u, ox0, sample, live);
    put(a.a21, c, ch, oy0 + 2u, ox0 + 4u, sample, live);
    put(a.a30, c, ch, oy0 + 3u, ox0, sample, live);
    put(a.a31, c, ch, oy0 + 3u, ox0 + 4u, sample, live);
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
