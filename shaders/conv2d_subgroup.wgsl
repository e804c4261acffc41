// Direct 2-D convolution, dense or grouped: a workgroup computes one tile of CO_TILE output
// channels (a divisor of the channels of a group chosen by the compiler, at most 32) at WG
// neighbouring groups of PX = 4 output pixels along a row of one sample; each invocation computes
// the whole tile at its 4 pixels. Per tap it loads (and normalises) 4 input values and the tile's
// QUADS vec4s of weights, and every input value serves CO_TILE multiply-adds; padding is handled
// branch-free (a clamped load, then zero).
// This is `conv2d.wgsl` dispatch for dispatch (same tiles, same workgroups, same packed weights)
// with the weights shared across a subgroup, for devices with subgroups of at least 8
// invocations: per tap lane i of the subgroup loads vector i of the tile's weights and takes the
// others from its neighbours with subgroupBroadcast, one vector load instead of QUADS.
// The accumulators are named variables and the pixel loop is written out: on lavapipe, which
// runs invocations as SIMD lanes, a local array indexed in a loop becomes per-lane memory traffic.
// Bias, activation and residual run in the epilogue; an optional per-channel affine prologue
// normalises in-bounds input taps (never the zero padding).
// Layouts: x [C_IN, H_IN, W_IN], y [C_OUT, H_OUT, W_OUT] per sample; the compiler packs the weights
// [C_OUT / CO_TILE, C_IN / GROUP, KH, KW, 32] (zero past CO_TILE), so vec4 j of a tap holds output
// channels 4j .. 4j + 3 of the tile; the sample is workgroup_id.z. p = [bias; C_OUT] ++
// [prelu slope; C_OUT] ++ [prologue scale; C_IN] ++ [prologue shift; C_IN].
// y is written OUT_VEC outputs of a row at a time (out_t: quads where the rows hold a multiple of
// 4 outputs, pairs where an even number, else scalars): on lavapipe a store, like a load, is a
// loop over the SIMD lanes whose cost is mostly per lane (the first conv of MobileFaceNet at
// batch 16: 33.5 -> 20.8 ms with quads instead of scalars).

// Shared tiles (CPU adapters): where the runtime sets SHARERS to the driver's thread count, the
// dispatch has SHARERS x 1 x N workgroups, and each subgroup takes from counters the share of a
// grid workgroup that one subgroup would have computed there (its lanes the same invocations, so
// the subgroupBroadcasts share the same values), as the subgroup GEMM takes its tiles
// (`pointwise_vec4_subgroup.wgsl`): same work, same sums, identical results.
// tiles = [next unit of range r, at r * SPREAD; SHARERS], zeroed before every run.
// mfn:constants
alias stored = f32;
const C_IN: u32 = 3u;
const H_IN: u32 = 8u;
const W_IN: u32 = 8u;
const C_OUT: u32 = 4u;
const H_OUT: u32 = 4u;
const W_OUT: u32 = 4u;
const KH: u32 = 3u;
const KW: u32 = 3u;
const SH: u32 = 2u;
const SW: u32 = 2u;
const PAD_T: u32 = 1u;
const PAD_L: u32 = 1u;
const GROUP: u32 = 1u;
const HAS_PROLOGUE: bool = false;
const CO_TILE: u32 = 4u;
const ACT: u32 = 0u;
const CLIP_MIN: f32 = 0.0;
const CLIP_MAX: f32 = 6.0;
const HAS_RESIDUAL: bool = false;
const WG: u32 = 64u;
alias out_t = vec4<stored>;
const LANE: out_t = out_t(0.0, 1.0, 2.0, 3.0);
const OUT_VEC: u32 = 4u;
// mfn:end-constants

/// Output pixels along a row one invocation computes.
const PX: u32 = 4u;
const OX_CHUNKS: u32 = (W_OUT + PX - 1u) / PX;
/// Invocations per tile of output channels, and the workgroups that hold them.
const TILE_THREADS: u32 = H_OUT * OX_CHUNKS;
const PX_GROUPS: u32 = (TILE_THREADS + WG - 1u) / WG;
const TILES: u32 = C_OUT / CO_TILE;
/// Workgroups of the grid, per sample.
const GRID: u32 = TILES * PX_GROUPS;
/// Vectors of 4 output channels in a tile (the last zero-padded); 8 in the packed weights.
const QUADS: u32 = (CO_TILE + 3u) / 4u;
const LANES: u32 = 32u;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;
const C_IN_G: u32 = C_IN / GROUP;
const C_OUT_G: u32 = C_OUT / GROUP;

@group(0) @binding(0) var<storage, read> x: array<stored>;
@group(0) @binding(1) var<storage, read> w: array<vec4<stored>>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
@group(0) @binding(3) var<storage, read> r: array<stored>;
@group(0) @binding(4) var<storage, read_write> y: array<out_t>;

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

/// Output channels co0 + 4j .. + 3 of the tile at one pixel: q<j>.
struct Px {
    q0: vec4<f32>,
    q1: vec4<f32>,
    q2: vec4<f32>,
    q3: vec4<f32>,
    q4: vec4<f32>,
    q5: vec4<f32>,
    q6: vec4<f32>,
    q7: vec4<f32>,
}

/// The accumulators of an invocation: its 4 pixels.
struct Tile {
    p0: Px,
    p1: Px,
    p2: Px,
    p3: Px,
}

/// One tap's weights for the tile: q<j> holds output channels co0 + 4j .. + 3.
alias Weights = Px;

/// acc + input value `v` times the tap's weights (quads past the tile stay zero).
fn mac(acc: Px, v: f32, k: Weights) -> Px {
    let s = vec4(v);
    return Px(
        fma(s, k.q0, acc.q0),
        select(acc.q1, fma(s, k.q1, acc.q1), QUADS > 1u),
        select(acc.q2, fma(s, k.q2, acc.q2), QUADS > 2u),
        select(acc.q3, fma(s, k.q3, acc.q3), QUADS > 3u),
        select(acc.q4, fma(s, k.q4, acc.q4), QUADS > 4u),
        select(acc.q5, fma(s, k.q5, acc.q5), QUADS > 5u),
        select(acc.q6, fma(s, k.q6, acc.q6), QUADS > 6u),
        select(acc.q7, fma(s, k.q7, acc.q7), QUADS > 7u),
    );
}

/// Input value at column `ix` of row `row`, normalised by the prologue, zero in the padding.
fn tap(row: u32, ix: i32, row_ok: bool, scale: f32, shift: f32) -> f32 {
    var v = f32(x[row + u32(clamp(ix, 0, i32(W_IN) - 1))]);
    if HAS_PROLOGUE { v = v * scale + shift; }
    return select(0.0, v, row_ok && ix >= 0 && ix < i32(W_IN));
}

/// An input row of the taps: where it starts, whether it is inside the map, and the prologue's
/// normalisation of its channel.
struct Row {
    at: u32,
    ok: bool,
    scale: f32,
    shift: f32,
}

/// acc (one pixel) + a row of 3 taps from input column `ix` on, with their weights `k0` .. `k2`.
fn taps3(acc: Px, r: Row, ix: i32, k0: Weights, k1: Weights, k2: Weights) -> Px {
    let a = mac(acc, tap(r.at, ix, r.ok, r.scale, r.shift), k0);
    let b = mac(a, tap(r.at, ix + 1, r.ok, r.scale, r.shift), k1);
    return mac(b, tap(r.at, ix + 2, r.ok, r.scale, r.shift), k2);
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

/// Writes output channels co .. co + 3 of the tile (from 4 * `index`) at the invocation's 4
/// pixels from `ox` on; `a0` .. `a3` hold those channels at pixels ox .. ox + 3.
fn put(a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>, co: u32, index: u32, base: u32, ox: u32, live: bool) {
    let q = quad(co);
    // Column j: channel co + j at the 4 pixels.
    let px = transpose(mat4x4(a0, a1, a2, a3));
    let inside = vec4(ox) + vec4(0u, 1u, 2u, 3u) < vec4(W_OUT);
    for (var j = 0u; j < 4u; j++) {
        let valid = inside & vec4(live && 4u * index + j < CO_TILE);
        put4(px[j], member(q, j), base + (co + j) * H_OUT * W_OUT + ox, valid);
    }
}

/// Writes the tile's channels at the invocation's pixels (quads past the tile write nothing).
fn put_tile(t: Tile, co0: u32, base: u32, ox: u32, live: bool) {
    put(t.p0.q0, t.p1.q0, t.p2.q0, t.p3.q0, co0, 0u, base, ox, live);
    if QUADS > 1u { put(t.p0.q1, t.p1.q1, t.p2.q1, t.p3.q1, co0 + 4u, 1u, base, ox, live); }
    if QUADS > 2u { put(t.p0.q2, t.p1.q2, t.p2.q2, t.p3.q2, co0 + 8u, 2u, base, ox, live); }
    if QUADS > 3u { put(t.p0.q3, t.p1.q3, t.p2.q3, t.p3.q3, co0 + 12u, 3u, base, ox, live); }
    if QUADS > 4u { put(t.p0.q4, t.p1.q4, t.p2.q4, t.p3.q4, co0 + 16u, 4u, base, ox, live); }
    if QUADS > 5u { put(t.p0.q5, t.p1.q5, t.p2.q5, t.p3.q5, co0 + 20u, 5u, base, ox, live); }
    if QUADS > 6u { put(t.p0.q6, t.p1.q6, t.p2.q6, t.p3.q6, co0 + 24u, 6u, base, ox, live); }
    if QUADS > 7u { put(t.p0.q7, t.p1.q7, t.p2.q7, t.p3.q7, co0 + 28u, 7u, base, ox, live); }
}

/// Output channels 4j .. 4j + 3 of the tile from lane j's vector (subgroupBroadcast takes a
/// constant lane).
fn from_lane0(v: vec4<f32>) -> vec4<f32> {
    return vec4(subgroupBroadcast(v.x, 0u), subgroupBroadcast(v.y, 0u), subgroupBroadcast(v.z, 0u), subgroupBroadcast(v.w, 0u));
}

fn from_lane1(v: vec4<f32>) -> vec4<f32> {
    return vec4(subgroupBroadcast(v.x, 1u), subgroupBroadcast(v.y, 1u), subgroupBroadcast(v.z, 1u), subgroupBroadcast(v.w, 1u));
}

fn from_lane2(v: vec4<f32>) -> vec4<f32> {
    return vec4(subgroupBroadcast(v.x, 2u), subgroupBroadcast(v.y, 2u), subgroupBroadcast(v.z, 2u), subgroupBroadcast(v.w, 2u));
}

fn from_lane3(v: vec4<f32>) -> vec4<f32> {
    return vec4(subgroupBroadcast(v.x, 3u), subgroupBroadcast(v.y, 3u), subgroupBroadcast(v.z, 3u), subgroupBroadcast(v.w, 3u));
}

fn from_lane4(v: vec4<f32>) -> vec4<f32> {
    return vec4(subgroupBroadcast(v.x, 4u), subgroupBroadcast(v.y, 4u), subgroupBroadcast(v.z, 4u), subgroupBroadcast(v.w, 4u));
}

fn from_lane5(v: vec4<f32>) -> vec4<f32> {
    return vec4(subgroupBroadcast(v.x, 5u), subgroupBroadcast(v.y, 5u), subgroupBroadcast(v.z, 5u), subgroupBroadcast(v.w, 5u));
}

fn from_lane6(v: vec4<f32>) -> vec4<f32> {
    return vec4(subgroupBroadcast(v.x, 6u), subgroupBroadcast(v.y, 6u), subgroupBroadcast(v.z, 6u), subgroupBroadcast(v.w, 6u));
}

fn from_lane7(v: vec4<f32>) -> vec4<f32> {
    return vec4(subgroupBroadcast(v.x, 7u), subgroupBroadcast(v.y, 7u), subgroupBroadcast(v.z, 7u), subgroupBroadcast(v.w, 7u));
}

/// A tap's weights for the tile, from its first packed vector `i`: lane `lane` of the subgroup
/// loads vector lane % 8 (quads past the tile: zero), the others come from its neighbours.
fn weights(i: u32, lane: u32) -> Weights {
    let j = lane % 8u;
    let v = select(vec4(0.0), vec4<f32>(w[i + min(j, QUADS - 1u)]), j < QUADS);
    let z = vec4(0.0);
    return Weights(
        from_lane0(v),
        select(z, from_lane1(v), QUADS > 1u),
        select(z, from_lane2(v), QUADS > 2u),
        select(z, from_lane3(v), QUADS > 3u),
        select(z, from_lane4(v), QUADS > 4u),
        select(z, from_lane5(v), QUADS > 5u),
        select(z, from_lane6(v), QUADS > 6u),
        select(z, from_lane7(v), QUADS > 7u),
    );
}

/// Grid workgroup `g`'s invocation `lid` (subgroup lane `lane`) for sample `sample`; `real`: an
/// invocation of the workgroup (else it stores nothing).
fn work(g: u32, lid: u32, lane: u32, sample: u32, real: bool) {
    // The tile is the workgroup's, the pixels the invocation's. Spare invocations compute the
    // tile's last pixels again and store nothing.
    let tile = min(g / PX_GROUPS, TILES - 1u);
    let t0 = (g % PX_GROUPS) * WG + lid;
    let live = real && g < TILES * PX_GROUPS && t0 < TILE_THREADS;
    let t = min(t0, TILE_THREADS - 1u);
    let co0 = tile * CO_TILE;
    let oy = t / OX_CHUNKS;
    let ox0 = (t % OX_CHUNKS) * PX;
    let ci0 = (co0 / C_OUT_G) * C_IN_G;
    let x0 = sample * C_IN * H_IN * W_IN;
    let ix0 = i32(ox0 * SW) - i32(PAD_L);
    var acc = Tile();
    for (var ci = 0u; ci < C_IN_G; ci++) {
        let c = ci0 + ci;
        var scale = 1.0;
        var shift = 0.0;
        if HAS_PROLOGUE {
            scale = p[2u * C_OUT + c];
            shift = p[2u * C_OUT + C_IN + c];
        }
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy * SH + ky) - i32(PAD_T);
            let row_ok = iy >= 0 && iy < i32(H_IN);
            let row = x0 + (c * H_IN + u32(clamp(iy, 0, i32(H_IN) - 1))) * W_IN;
            // One write of the loop-carried accumulators per row of taps (lavapipe masks every
            // write to a variable that lives across iterations).
            var a = acc;
            let wi = ((tile * C_IN_G + ci) * KH * KW + ky * KW) * (LANES / 4u);
            if KW == 3u {
                // Pixel after pixel, each taking the row's 3 taps at once: the accumulators do
                // not fit in registers on lavapipe, and this reads and writes them once a row
                // instead of once a tap (1.2 times as fast for the first conv of MobileFaceNet).
                let k0 = weights(wi, lane);
                let k1 = weights(wi + LANES / 4u, lane);
                let k2 = weights(wi + 2u * (LANES / 4u), lane);
                let at = Row(row, row_ok, scale, shift);
                a = Tile(
                    taps3(a.p0, at, ix0, k0, k1, k2),
                    taps3(a.p1, at, ix0 + i32(SW), k0, k1, k2),
                    taps3(a.p2, at, ix0 + i32(2u * SW), k0, k1, k2),
                    taps3(a.p3, at, ix0 + i32(3u * SW), k0, k1, k2),
                );
            } else {
                for (var kx = 0u; kx < KW; kx++) {
                    let k = weights(wi + kx * (LANES / 4u), lane);
                    a = Tile(
                        mac(a.p0, tap(row, ix0 + i32(kx), row_ok, scale, shift), k),
                        mac(a.p1, tap(row, ix0 + i32(SW + kx), row_ok, scale, shift), k),
                        mac(a.p2, tap(row, ix0 + i32(2u * SW + kx), row_ok, scale, shift), k),
                        mac(a.p3, tap(row, ix0 + i32(3u * SW + kx), row_ok, scale, shift), k),
                    );
                }
            }
            acc = a;
        }
    }
    let base = (sample * C_OUT) * H_OUT * W_OUT + oy * W_OUT;
    put_tile(acc, co0, base, ox0, live);
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
