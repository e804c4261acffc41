// Pointwise (1x1, stride 1, no padding) convolution where the feature map holds a multiple of 4
// pixels, with the weights shared across a subgroup: `pointwise_vec4.wgsl` dispatch for dispatch
// (same tiles, same workgroups, same packed weights), for devices with subgroups of at least 8
// invocations. Every invocation of a workgroup works on the same 32 output channels, so per group
// of 4 input channels each invocation loads 4 vectors of the tile's weights (invocation i of the
// subgroup: channels co0 + i, + 8, + 16, + 24, each over the 4 input channels) and takes the
// other 124 from its neighbours with subgroupBroadcast: per 4 input channels 4 vector loads of
// inputs and 4 of weights for 512 multiply-adds. On lavapipe, where every load is a per-lane loop
// and a broadcast a register shuffle, loads are what counts.
// The accumulators are named vectors, never a local array indexed in a loop (on lavapipe, which
// runs invocations as SIMD lanes, that becomes per-lane memory traffic), and the loop carries them
// through 4 input channels an iteration (lavapipe masks every write to a variable that lives
// across iterations). They are grouped by pixel and updated pixel after pixel, each taking all 4
// input channels at once: the 128 accumulators do not fit in registers, and this order reads and
// writes each once per iteration instead of once per input channel (1.12 times as fast on
// lavapipe as channel after channel, for the same sums in the same order). 8 input channels an
// iteration halve those reads and writes, but (likely) the loop's machine code, 35 KB, then
// outgrows the CPU's 32 KB instruction cache: with 4, the whole pretrained model takes 0.915 to 0.93 of the time at
// batch 1 and 0.97 at batch 16 on lavapipe (session 17, with the wide loads; session 9 measured
// 0.98 for the GEMM alone).
// Every input channel is a row of its own, so an iteration reads 8 cache lines one row apart.
// Where rows are longer than 2 KB (TOUCH), further apart than CPUs' stride prefetchers follow,
// the misses of lavapipe's per-lane load loops come one after another: there each iteration
// first touches the lines of the next one (lane i of the subgroup: one float of line i / 4 of
// row i % 4), 8 loads close enough together for their misses to overlap (64->128 at 56x56, batch
// 16, on a 2-core AMD EPYC: 72 -> 50-64 ms). On shorter rows that only costs time (14x14 maps: 3
// to 10% slower).
// Layouts: x [C_IN, HW], y [C_OUT, HW] per sample (workgroup_id.z), HW % 8 == 0 (so that the
// pixel vec4s pair up within rows, see `put`): the map's pixels, or its planes padded to a
// multiple of 8 where the map's pixels are not (14x14: 200, 7x7: 56; see
// compiler/src/codegen/layout.rs), the padding computed like any pixel and never read as one; w is
// a texture of 32 RGBA texels a row and C_OUT / 32 * C_IN / 4 rows (both rounded up), texel j of
// row b * CI4 + g holding the weights of output channel 32b + j for input channels 4g .. 4g + 3
// (zero-padded): on lavapipe textureLoad fetches a texel with vector gathers, where a storage
// buffer load is a loop over the SIMD lanes (batch 16, 128 -> 256 at 14x14: 1.1 to 1.2 times as
// fast); p is a texture of 16 RGBA texels a row and C_OUT / 32 rows (rounded up), texel j of row
// b holding the biases of output channels 32b + j, + 8, + 16, + 24 and texel 8 + j their PReLU
// slopes (zero-padded; f32 in either precision): each invocation's share of its tile's parameters
// is 2 texels (on lavapipe, 2 texel fetches instead of 8 single-float loads, each a loop over the
// lanes: the whole model in 0.98 of the time at batch 16, 0.996 at batch 1).
// Tiles run pixel group after pixel group, the blocks of 32 output channels of one pixel group
// one after another: they read the same inputs, which the blocks after the first find in the
// cache (whole pretrained model on lavapipe, 2-core AMD EPYC, batch 1: 0.94 to 0.96 of the time
// of block after block; batch 16 unchanged).
// Shared tiles (CPU adapters): where the runtime sets SHARERS to the driver's thread count, the
// dispatch has SHARERS x 1 x N workgroups and the tiles of 8 pixel vec4s (a subgroup's; they run
// on into the next sample where a sample's end leaves lanes over) are taken from counters instead
// of given by the grid. Lavapipe hands each of its threads a fixed,
// contiguous share of a dispatch's workgroups; on machines whose cores run at unequal speeds (a
// virtual machine's vCPUs: 1.3 to 1.65 times apart, measured) the fast thread then waits for the
// slow one at every dispatch. Here thread i's first workgroup takes the tiles of range i (a
// contiguous share of the tile list, its samples in that thread's caches) and then those left in
// the other ranges; the workgroups after it find every range taken. Same tiles, same sums: the
// results are identical.
// tiles = [next tile of range r, at r * SPREAD; SHARERS], zeroed before every run (one slot per
// dispatch).

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

// How activations are read and written: as here, vectors of the stored type; on CPU adapters
// with 64-bit integers, the runtime replaces this block with one that moves the same bits as
// vec2<u64> (mfn_compiler::wide), 2 components a lane instead of 4 (lavapipe checks and inserts
// every component of a load lane by lane: the whole model at batch 1 in 0.95 of the time); the
// pairs of pixel vec4s that `put` writes (packed8: two of packed4, made with pack4) as vec4<u64>.
// mfn:loads
alias packed4 = vec4<stored>;
fn unpack4(v: packed4) -> vec4<f32> {
    return vec4<f32>(v);
}
fn pack4(v: vec4<f32>) -> packed4 {
    return packed4(v);
}
alias packed8 = mat2x4<stored>;
fn unpack8(v: packed8) -> mat2x4<f32> {
    return mat2x4<f32>(v);
}
fn pack8(v: mat2x4<f32>) -> packed8 {
    return packed8(v);
}
// mfn:end-loads

const CO_TILE: u32 = 32u;
const CO_BLOCKS: u32 = (C_OUT + CO_TILE - 1u) / CO_TILE;
const HW4: u32 = HW / 4u;
const_assert HW % 8u == 0u;
/// Whether the iterations touch the next one's cache lines: rows of at least 512 pixels (2 KB in f32),
/// unless the runtime turns it off (TOUCHING).
const TOUCH: bool = HW >= 512u;
/// Workgroups per tile of output channels: one pixel vec4 an invocation.
const PX_GROUPS: u32 = (HW4 + WG - 1u) / WG;
/// Groups of 4 input channels; the last is partial where C_IN % 4 != 0.
const CI4: u32 = (C_IN + 3u) / 4u;
const PARTIAL: bool = C_IN % 4u != 0u;
const ACT_RELU: u32 = 1u;
const ACT_PRELU: u32 = 2u;
const ACT_CLIP: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;

@group(0) @binding(0) var<storage, read> x: array<packed4>;
@group(0) @binding(1) var w: texture_2d<f32>;
@group(0) @binding(2) var p: texture_2d<f32>;
@group(0) @binding(3) var<storage, read> r: array<packed8>;
@group(0) @binding(4) var<storage, read_write> y: array<packed8>;

/// A channel's epilogue parameters (bias and PReLU slope).
struct Channel {
    bias: f32,
    slope: f32,
}

/// The epilogue up to the residual, which `put` adds.
fn epilogue(acc: vec4<f32>, ch: Channel) -> vec4<f32> {
    var v = acc + ch.bias;
    if ACT == ACT_RELU { v = max(v, vec4(0.0)); }
    if ACT == ACT_PRELU { v = select(v * ch.slope, v, v >= vec4(0.0)); }
    if ACT == ACT_CLIP { v = clamp(v, vec4(CLIP_MIN), vec4(CLIP_MAX)); }
    if ACT == ACT_SIGMOID { v = 1.0 / (1.0 + exp(-v)); }
    return v;
}

/// The accumulators of one of an invocation's 4 pixels: a<k> holds output channels co0 + 4k ..
/// co0 + 4k + 3 (component i: channel co0 + 4k + i).
struct Pixel {
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
    a4: vec4<f32>,
    a5: vec4<f32>,
    a6: vec4<f32>,
    a7: vec4<f32>,
}

/// The accumulators of an invocation: p<i> is pixel i of its pixel vec4.
struct Tile {
    p0: Pixel,
    p1: Pixel,
    p2: Pixel,
    p3: Pixel,
}

/// The tile's weights for a group of 4 input channels: column u of k<k> holds output channels
/// co0 + 4k .. co0 + 4k + 3 of input channel 4g + u.
struct Weights {
    k0: mat4x4<f32>,
    k1: mat4x4<f32>,
    k2: mat4x4<f32>,
    k3: mat4x4<f32>,
    k4: mat4x4<f32>,
    k5: mat4x4<f32>,
    k6: mat4x4<f32>,
    k7: mat4x4<f32>,
}

/// The weights of the 4 output channels whose share vectors `v` lanes 0 .. 3 of the subgroup
/// hold (subgroupBroadcast takes a constant lane): column u is input channel u.
fn lanes_lo(v: vec4<f32>) -> mat4x4<f32> {
    return transpose(mat4x4(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u)));
}

/// The same for lanes 4 .. 7.
fn lanes_hi(v: vec4<f32>) -> mat4x4<f32> {
    return transpose(mat4x4(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u)));
}

/// The tile's weights for one group of input channels from the subgroup's shares: the
/// invocation loads 4 texels from `i` (column lane % 8: output channels co0 + 8h + lane % 8,
/// h = 0 .. 3).
fn weights(i: vec2<u32>) -> Weights {
    let v0 = textureLoad(w, i, 0);
    let v1 = textureLoad(w, i + vec2(8u, 0u), 0);
    let v2 = textureLoad(w, i + vec2(16u, 0u), 0);
    let v3 = textureLoad(w, i + vec2(24u, 0u), 0);
    return Weights(lanes_lo(v0), lanes_hi(v0), lanes_lo(v1), lanes_hi(v1), lanes_lo(v2), lanes_hi(v2), lanes_lo(v3), lanes_hi(v3));
}

/// acc (4 output channels at one pixel) + input channels 4g .. 4g + 3 at that pixel (`xp`)
/// times their weights `k`, channel after channel.
fn dot4(acc: vec4<f32>, xp: vec4<f32>, k: mat4x4<f32>) -> vec4<f32> {
    let v = fma(vec4(xp.x), k[0], acc);
    let v1 = fma(vec4(xp.y), k[1], v);
    let v2 = fma(vec4(xp.z), k[2], v1);
    return fma(vec4(xp.w), k[3], v2);
}

/// A pixel's accumulators plus one group of input channels (`xp`, weights `k`).
fn pixel(a: Pixel, xp: vec4<f32>, k: Weights) -> Pixel {
    return Pixel(dot4(a.a0, xp, k.k0), dot4(a.a1, xp, k.k1), dot4(a.a2, xp, k.k2), dot4(a.a3, xp, k.k3),
                 dot4(a.a4, xp, k.k4), dot4(a.a5, xp, k.k5), dot4(a.a6, xp, k.k6), dot4(a.a7, xp, k.k7));
}

/// The pixels of input channel `ci` at `x_at` (the invocation's vec4 of channel 0); zero past
/// the last channel (the padded part of a partial group).
fn load_x(x_at: u32, ci: u32) -> vec4<f32> {
    if PARTIAL {
        return select(vec4(0.0), unpack4(x[x_at + min(ci, C_IN - 1u) * HW4]), ci < C_IN);
    }
    return unpack4(x[x_at + ci * HW4]);
}

/// Input channels 4g .. 4g + 3 at the invocation's 4 pixels, transposed: column i is pixel i.
fn inputs(x_at: u32, g: u32) -> mat4x4<f32> {
    let c = 4u * g;
    return transpose(mat4x4(load_x(x_at, c), load_x(x_at, c + 1u), load_x(x_at, c + 2u), load_x(x_at, c + 3u)));
}

/// `t` plus the group of input channels 4g .. 4g + 3, pixel after pixel: on lavapipe the
/// accumulators do not fit in registers, and taking 4 input channels into each before the next
/// (instead of every accumulator once per input channel) cuts the traffic to where they are
/// spilled. `w_at` is the invocation's first share texel of the tile (group 0).
fn group(t: Tile, g: u32, x_at: u32, w_at: vec2<u32>) -> Tile {
    let k = weights(w_at + vec2(0u, g));
    let x4 = inputs(x_at, g);
    return Tile(pixel(t.p0, x4[0], k), pixel(t.p1, x4[1], k), pixel(t.p2, x4[2], k), pixel(t.p3, x4[3], k));
}

/// Writes output channels co .. co + 3 (those below C_OUT) at pixel vec4 q from the 4 pixels'
/// accumulators of those channels; `bias` and `slope` hold their parameters. The two lanes of a
/// pair (`odd`: the second), which hold pixel vec4s q and q + 1 of the same rows (HW % 8 == 0),
/// write a channel each, its 8 pixels of both lanes as one element of y: on lavapipe a store is a
/// loop over the lanes that costs mostly by the lane, and half as many stores of twice the size
/// (the lanes swap a vec4 by a shuffle), with the planes padded to 8 pixels for them, took 0.95 of
/// the whole model's time at batch 1 and 0.99 at batch 16 (the residual is read the same way).
fn put(a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>, co: u32, bias: vec4<f32>, slope: vec4<f32>, q: u32, sample: u32, ok: bool, odd: bool) {
    let acc = transpose(mat4x4(a0, a1, a2, a3));
    for (var j = 0u; j < 4u; j += 2u) {
        let e0 = epilogue(acc[j], Channel(bias[j], slope[j]));
        let e1 = epilogue(acc[j + 1u], Channel(bias[j + 1u], slope[j + 1u]));
        // The even lane writes channel co + j (its pixels, then its partner's), the odd lane
        // channel co + j + 1 (its partner's pixels, then its own).
        let other = subgroupShuffleXor(select(e1, e0, odd), 1u);
        let co_j = co + j + u32(odd);
        // Pixel vec4s q and q + 1, or q - 1 and q: the pair's first is even.
        let at = ((sample * C_OUT + co_j) * HW4 + q) / 2u;
        if ok && co_j < C_OUT {
            var v = mat2x4(select(e0, other, odd), select(other, e1, odd));
            if HAS_RESIDUAL { v += unpack8(r[at]); }
            y[at] = pack8(v);
        }
    }
}

/// Where the touching loads put their sum: written, never read, so that no compiler drops them.
var<workgroup> touched: f32;

/// Whether to touch where TOUCH says so: a chain's links do not (`mfn_compiler::chain`). A chain
/// runs batches of a few samples, whose inputs the caches hold, and there touching costs time (the
/// pretrained model at batch 1: 0.976 of the time without it; batch 4 0.999, 9 0.992; batch 16,
/// where no chain has a GEMM of 28x28 or more, 1.03).
override TOUCHING: bool = true;

/// One float of cache line `line` (0 or 1) of the two that the subgroup's lanes read in input
/// channel `ci` (clamped to the last) of the sample at `x_at`: pixel vec4 `first` + 4 * line.
fn touch(x_at: u32, first: u32, ci: u32, line: u32) -> f32 {
    if !(TOUCH && TOUCHING) {
        return 0.0;
    }
    let row = x_at + min(ci, C_IN - 1u) * HW4;
    return unpack4(x[row + min(first + 4u * line, HW4 - 1u)]).x;
}

/// Threads of the driver sharing the tiles (set by the runtime through a pipeline constant); 0:
/// the workgroup grid is the tile grid.
override SHARERS: u32 = 0u;
/// Counters a cache line (64 bytes) apart, so that threads taking tiles from their own ranges do
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

/// One tile of `lanes` pixel vec4s of output channels block * CO_TILE .. + CO_TILE - 1: the
/// invocation's is pixel vec4 q of sample `sample`; `live`: the invocation has one.
fn tile(block: u32, q: u32, sample: u32, lane: u32, live: bool) {
    let sample_at = sample * C_IN * HW4;
    let x_at = sample_at + min(q, HW4 - 1u);
    let w_at = vec2(lane % 8u, block * CI4);
    let ok = live && q < HW4;
    // A subgroup's 8 pixel vec4s (lanes 0 .. 7) are 2 cache lines of each input channel; lane i
    // touches line i / 4 of channel i % 4 of the next 4 (the first 4 before the loop).
    let first = min(q / 8u * 8u, HW4 - 1u);
    let line = lane % 8u / 4u;
    let row = lane % 4u;
    var touches = touch(sample_at, first, row, line);
    let busy = subgroupAny(ok);
    var t = Tile();
    for (var k = 0u; k < select(0u, CI4, busy); k++) {
        touches += touch(sample_at, first, 4u * k + 4u + row, line);
        t = group(t, k, x_at, w_at);
    }
    if TOUCH && TOUCHING {
        touched = touches;
    }
    let co0 = block * CO_TILE;
    // The invocation's share of the tile's parameters: output channel co0 + 8h + lane % 8 in
    // component h.
    let bias = textureLoad(p, vec2(lane % 8u, block), 0);
    let slope = textureLoad(p, vec2(8u + lane % 8u, block), 0);
    // Column h: the parameters of output channels co0 + 8h .. + 3 (lo) and co0 + 8h + 4 .. + 7 (hi).
    let bias_lo = lanes_lo(bias);
    let bias_hi = lanes_hi(bias);
    let slope_lo = lanes_lo(slope);
    let slope_hi = lanes_hi(slope);
    let odd = lane % 2u == 1u;
    put(t.p0.a0, t.p1.a0, t.p2.a0, t.p3.a0, co0, bias_lo[0], slope_lo[0], q, sample, ok, odd);
    put(t.p0.a1, t.p1.a1, t.p2.a1, t.p3.a1, co0 + 4u, bias_hi[0], slope_hi[0], q, sample, ok, odd);
    put(t.p0.a2, t.p1.a2, t.p2.a2, t.p3.a2, co0 + 8u, bias_lo[1], slope_lo[1], q, sample, ok, odd);
    put(t.p0.a3, t.p1.a3, t.p2.a3, t.p3.a3, co0 + 12u, bias_hi[1], slope_hi[1], q, sample, ok, odd);
    put(t.p0.a4, t.p1.a4, t.p2.a4, t.p3.a4, co0 + 16u, bias_lo[2], slope_lo[2], q, sample, ok, odd);
    put(t.p0.a5, t.p1.a5, t.p2.a5, t.p3.a5, co0 + 20u, bias_hi[2], slope_hi[2], q, sample, ok, odd);
    put(t.p0.a6, t.p1.a6, t.p2.a6, t.p3.a6, co0 + 24u, bias_lo[3], slope_lo[3], q, sample, ok, odd);
    put(t.p0.a7, t.p1.a7, t.p2.a7, t.p3.a7, co0 + 28u, bias_hi[3], slope_hi[3], q, sample, ok, odd);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32,
        @builtin(subgroup_id) subgroup: u32) {
    // Shared tiles: a subgroup's `lanes` pixel vec4s of one block of output channels, consecutive
    // in the batch's pixel vec4s, sample after sample (the tile's last lanes may take the next
    // sample's first pixels: where a sample's pixel vec4s are not a multiple of `lanes`, 50 at
    // 14x14 and 14 at 7x7 for 8 lanes, tiles within a sample would leave 6 and 2 lanes in 56 and
    // 16 idle); the list runs tile after tile, block after block within a tile (the blocks of the
    // same pixels one after another). Range r is its r-th SHARERS-th; this workgroup starts on the
    // range of the thread that runs it (lavapipe gives thread r the r-th contiguous share of the
    // workgroups, in the order x, then z).
    // SHARERS itself, kept from 0 so that the divisions below stay valid where the constant is 0
    // (naga rejects a division by a constant zero).
    let ranges = max(SHARERS, 1u);
    let pixels = nwg.z * HW4;
    let total = CO_BLOCKS * ((pixels + lanes - 1u) / lanes);
    let workgroups = nwg.x * nwg.z;
    var r = (wid.x + wid.z * nwg.x) * ranges / workgroups;
    // Ranges found empty; every iteration takes a tile or finds one more range empty (on the grid,
    // one iteration), until UNIT_CAP tiles are taken. The body is called once, in this loop, for
    // both: a second call would double the shader the driver compiles before it drops the path that
    // the constant rules out.
    var empty = 0u;
    // Units this invocation took (at most UNIT_CAP).
    var units = 0u;
    loop {
        if empty >= ranges || units >= UNIT_CAP {
            break;
        }
        var block: u32;
        var q: u32;
        var sample: u32;
        var live = true;
        if SHARERS == 0u {
            // The tile is the workgroup's, the pixels the invocation's. Spare invocations compute
            // a clamped pixel vec4 and store nothing; a subgroup with no live pixel computes
            // nothing (the last workgroup of a 14x14 map, 49 pixel vec4s for 64 invocations before
            // its planes were padded to 50, had one such subgroup of 8 lanes on lavapipe: about 1.1
            // times as fast), and its lanes skip the loop together.
            let g = wid.x + wid.y * nwg.x;
            block = g % CO_BLOCKS;
            // The subgroup's pixel vec4s consecutive in lane order, whatever the order of the
            // invocations in subgroups (`put` pairs neighbouring lanes).
            q = min(g / CO_BLOCKS, PX_GROUPS - 1u) * WG + subgroup * lanes + lane;
            sample = wid.z;
            live = g < CO_BLOCKS * PX_GROUPS;
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
            block = at % CO_BLOCKS;
            // The lane's pixel vec4 in the batch; past its last, the lane computes the last
            // sample's and stores nothing.
            let flat = (at / CO_BLOCKS) * lanes + lane;
            live = flat < pixels;
            sample = min(flat / HW4, nwg.z - 1u);
            q = flat % HW4;
        }
        tile(block, q, sample, lane, live);
        if CHAINED && lane == 0u {
            atomicAdd(&tiles[DONE], 1u);
        }
    }
    units_total = total;
}
