//! Chains: consecutive kernels that share their tiles ([`crate::Kernel::tile_counters`]) run as
//! one dispatch on a CPU adapter, one after the other, instead of a dispatch each.
//!
//! On lavapipe a dispatch wakes the driver's threads and joins them at its end, 50 to 80 us on a
//! 2-core virtual machine whatever the work; MobileFaceNet has 50 dispatches of 0.1 to 2 ms of
//! work each at batch 1. In a chain, the links are the kernels' own WGSL in one module: link i's
//! module-scope names prefixed `c<i>_`, its bindings moved past those of the links before it, its
//! entry point a plain function, which the chain's entry point calls in turn. Every link but the
//! last has its [`CHAINED`] constant set: it counts its units done, and once it has returned (every
//! unit taken) the entry point waits until all are done before it calls the next link, which reads
//! what this one wrote. Whoever takes a unit finishes it without waiting on anything, so the wait
//! ends however the driver schedules the workgroups; but lavapipe also ends an invocation's loops
//! once they have run 65,535 iterations in all (see `Kernel::unit_iterations`), which a spinning
//! wait would spend, so the wait is at most [`CHAIN_WAIT`] iterations of 32 polls each, and one
//! that gives up ends the chain and sets the chain's status word: the runtime then runs that batch
//! again without chains. The runtime also uses a chain only for batches whose units fit that
//! budget with one invocation taking them all ([`crate::Kernel::unit_iterations`]).
//!
//! The composition is textual and relies on the templates' layout: module-scope declarations start
//! at column 0 (after their attributes), struct members are declared one a line, the entry point
//! is `main` with `@builtin` parameters, and the shared-tile templates declare `CHAINED`, their
//! counters `tiles`, the slot `DONE` where their units count themselves done, and
//! `units_total`, the units of the dispatch, which `main` sets.

/// The pipeline constant through which the runtime makes a shared-tile kernel a link that waits
/// for its units before it returns (WGSL `override CHAINED: bool`).
pub const CHAINED: &str = "CHAINED";

/// The pipeline constant of a chain that bounds each wait for a link's units: iterations of the
/// waiting loop, each polling the count of finished units 32 times (WGSL `override CHAIN_WAIT: u32`).
pub const CHAIN_WAIT: &str = "CHAIN_WAIT";

/// The pipeline constant of the subgroup GEMM that makes it touch the cache lines of its next
/// iteration's inputs (WGSL `override TOUCHING: bool = true`): a chain's links never do. A chain
/// runs batches that fit the driver's loop budget, a few samples, whose inputs the caches hold, and
/// there touching only costs time (`shaders/pointwise_vec4_subgroup.wgsl`).
pub const TOUCHING: &str = "TOUCHING";

/// The chain's status word (a binding past the links'): 0, or 1 where a link gave up.
const STATUS: &str = "chain_status";

/// Workgroup size of a chain's entry point: a multiple of every subgroup size a CPU adapter has
/// (lavapipe: 8, or 16 at 512 bits). Every link takes its units from counters, so the size only
/// sets how many subgroups a workgroup has.
pub const CHAIN_WORKGROUP: u32 = 32;

/// One kernel of a chain: the WGSL of the variant that runs and its bindings.
#[derive(Clone, Copy, Debug)]
pub struct Link<'a> {
    /// The kernel's WGSL: that of the variant that runs, subgroup or plain.
    pub wgsl: &'a str,
    /// Bindings of the kernel, 0..bindings, its tile counters included.
    pub bindings: u32,
    /// Bindings that are textures (bit i: binding i), as [`crate::Kernel::textures`].
    pub textures: u32,
    /// Storage bindings declared read-only that the chain must declare read-write (bit i:
    /// binding i): a buffer that one link writes and another reads is bound twice in the
    /// dispatch, and WebGPU allows a writable binding of a buffer only beside other writable ones.
    pub read_write: u32,
}

/// The name of link `link`'s module-scope name (or pipeline constant) `name` in a chain.
pub fn link_name(link: usize, name: &str) -> String {
    format!("c{link}_{name}")
}

/// The first binding of each link and, last, the binding of the chain's status word (one `u32`,
/// read-write storage, zero before the dispatch).
pub fn binding_bases(links: &[Link]) -> Vec<u32> {
    let mut bases = vec![0];
    for l in links {
        bases.push(bases.last().copied().unwrap_or(0) + l.bindings);
    }
    bases
}

/// The WGSL module of a chain of `links` (see the module's documentation).
pub fn chain(links: &[Link]) -> String {
    let bases = binding_bases(links);
    let mut enables: Vec<String> = Vec::new();
    let mut bodies = String::new();
    let mut calls = Vec::new();
    let mut builtins: Vec<(String, String)> = Vec::new();
    for (i, link) in links.iter().enumerate() {
        let mut text = String::new();
        for line in link.wgsl.lines() {
            if line.starts_with("enable ") {
                if !enables.iter().any(|e| e == line) {
                    enables.push(line.to_string());
                }
            } else if line == format!("override {TOUCHING}: bool = true;") {
                text.push_str(&format!("const {TOUCHING}: bool = false;\n"));
            } else {
                text.push_str(line);
                text.push('\n');
            }
        }
        let names = module_names(&text);
        let renamed = rename(&text, &names, &link_name(i, ""));
        let rebound = rebind(&renamed, bases[i], link.read_write);
        let (body, params) = entry_to_function(&rebound, &link_name(i, "main"));
        let mut args = Vec::new();
        for (builtin, ty) in params {
            if !builtins.iter().any(|(b, _)| *b == builtin) {
                builtins.push((builtin.clone(), ty));
            }
            args.push(format!("b_{builtin}"));
        }
        calls.push(format!("    {}({});", link_name(i, "main"), args.join(", ")));
        bodies.push_str(&format!("// ---- link {i}\n{body}\n"));
        if i + 1 < links.len() {
            // Where the wait for the link's units gives up, the chain ends and says so.
            calls.push(format!("    if !{}() {{\n        atomicStore(&{STATUS}[0], 1u);\n        return;\n    }}", link_name(i, "settle")));
            bodies.push_str(&settle(&link_name(i, "")));
        }
    }
    let params: Vec<String> = builtins.iter().map(|(b, ty)| format!("@builtin({b}) b_{b}: {ty}")).collect();
    let mut out = String::new();
    for e in &enables {
        out.push_str(e);
        out.push('\n');
    }
    out.push_str(&format!("// mfn chain of {} kernels in one dispatch (see mfn_compiler::chain)\n", links.len()));
    out.push_str(&bodies);
    let status = bases.last().copied().unwrap_or(0);
    out.push_str(&format!("// ---- the chain\n@group(0) @binding({status}) var<storage, read_write> {STATUS}: array<atomic<u32>>;\n"));
    out.push_str(&format!("/// Iterations a wait for a link's units takes at most (set by the runtime).\noverride {CHAIN_WAIT}: u32 = 0u;\n\n"));
    out.push_str(&format!("@compute @workgroup_size({CHAIN_WORKGROUP})\nfn main({}) {{\n{}\n}}\n", params.join(", "), calls.join("\n")));
    out
}

/// The wait for the units of the link whose module-scope names start with `prefix`: whether all of
/// them are done (its `units_total` at its `DONE` counter) within CHAIN_WAIT iterations of 32
/// polls. An atomic add reads the count (a plain load could be hoisted out of the loop).
fn settle(prefix: &str) -> String {
    format!(
        "fn {prefix}finished() -> bool {{
    return atomicAdd(&{prefix}tiles[{prefix}DONE], 0u) >= {prefix}units_total;
}}
fn {prefix}finished4() -> bool {{
    return {prefix}finished() || {prefix}finished() || {prefix}finished() || {prefix}finished();
}}
fn {prefix}finished16() -> bool {{
    return {prefix}finished4() || {prefix}finished4() || {prefix}finished4() || {prefix}finished4();
}}
fn {prefix}settle() -> bool {{
    for (var i = 0u; i < {CHAIN_WAIT}; i++) {{
        if {prefix}finished16() || {prefix}finished16() {{
            return true;
        }}
    }}
    return false;
}}
"
    )
}

/// The names a module declares at module scope: the first identifier after `fn`, `const`,
/// `override`, `alias`, `struct` or `var<...>` on a line that starts at column 0 (after any
/// attributes).
fn module_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        if line.starts_with(|c: char| c.is_whitespace() || c == '/' || c == '}') {
            continue;
        }
        let mut rest = line;
        // Attributes: `@name` or `@name(...)`.
        while let Some(after) = rest.strip_prefix('@') {
            let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(after.len());
            rest = &after[end..];
            if let Some(args) = rest.strip_prefix('(') {
                rest = args.find(')').map_or("", |close| &args[close + 1..]);
            }
            rest = rest.trim_start();
        }
        let keyword_end = rest.find(|c: char| !c.is_alphanumeric() && c != '_').unwrap_or(rest.len());
        let (keyword, mut after) = rest.split_at(keyword_end);
        if !matches!(keyword, "fn" | "const" | "override" | "alias" | "struct" | "var") {
            continue;
        }
        if keyword == "var" {
            if let Some(close) = after.strip_prefix('<').and_then(|a| a.find('>')) {
                after = &after[close + 2..];
            }
        }
        let after = after.trim_start();
        let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(after.len());
        if end > 0 && !names.iter().any(|n| n == &after[..end]) {
            names.push(after[..end].to_string());
        }
    }
    names
}

/// `text` with every identifier of `names` prefixed by `prefix`, except after `.` (members,
/// swizzles) or `@` (attributes), in comments, and as a member's name in a struct declaration.
fn rename(text: &str, names: &[String], prefix: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut in_struct = false;
    for line in text.lines() {
        if line.starts_with("struct ") {
            in_struct = true;
        }
        let (code, comment) = match line.find("//") {
            Some(at) => line.split_at(at),
            None => (line, ""),
        };
        let mut rest = code;
        let mut previous = ' ';
        while !rest.is_empty() {
            let c = rest.chars().next().unwrap_or(' ');
            if c.is_ascii_digit() {
                // A number with its suffix or exponent (`0u`, `1e-3`): no name in it.
                let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '.')).unwrap_or(rest.len());
                out.push_str(&rest[..end]);
                rest = &rest[end..];
                previous = '0';
            } else if c.is_alphabetic() || c == '_' {
                let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
                let word = &rest[..end];
                let member = in_struct && rest[end..].trim_start().starts_with(':');
                if previous != '.' && previous != '@' && !member && names.iter().any(|n| n == word) {
                    out.push_str(prefix);
                }
                out.push_str(word);
                rest = &rest[end..];
                previous = 'a';
            } else {
                out.push(c);
                if !c.is_whitespace() {
                    previous = c;
                }
                rest = &rest[c.len_utf8()..];
            }
        }
        out.push_str(comment);
        out.push('\n');
        if in_struct && line.starts_with('}') {
            in_struct = false;
        }
    }
    out
}

/// `text` with every `@binding(n)` moved to `@binding(base + n)`, and the storage bindings of the
/// `read_write` mask declared read-write.
fn rebind(text: &str, base: u32, read_write: u32) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let Some(at) = line.find("@binding(") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let digits = &line[at + 9..];
        let end = digits.find(')').unwrap_or(0);
        let n: u32 = digits[..end].parse().unwrap_or(0);
        let mut line = format!("{}@binding({}){}", &line[..at], base + n, &digits[end + 1..]);
        if n < 32 && read_write & (1 << n) != 0 {
            line = line.replacen("var<storage, read>", "var<storage, read_write>", 1);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `text` with its compute entry point (already renamed to `name`) made a plain function, and the
/// builtins of its parameters in order, with their types.
fn entry_to_function(text: &str, name: &str) -> (String, Vec<(String, String)>) {
    let mut out = String::with_capacity(text.len());
    let mut params = Vec::new();
    let mut in_signature = false;
    for line in text.lines() {
        if line.starts_with("@compute") {
            continue;
        }
        if line.starts_with(&format!("fn {name}(")) {
            in_signature = true;
        }
        if in_signature {
            let mut rest = line;
            let mut cleaned = String::new();
            while let Some(at) = rest.find("@builtin(") {
                cleaned.push_str(&rest[..at]);
                let after = &rest[at + 9..];
                let close = after.find(')').unwrap_or(0);
                let builtin = after[..close].to_string();
                let param = after[close + 1..].trim_start();
                let ty_start = param.find(':').map_or(0, |c| c + 1);
                let ty_end = param[ty_start..].find([',', ')']).map_or(param.len(), |e| ty_start + e);
                params.push((builtin, param[ty_start..ty_end].trim().to_string()));
                rest = param;
            }
            cleaned.push_str(rest);
            out.push_str(&cleaned);
            out.push('\n');
            if line.trim_end().ends_with('{') {
                in_signature = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, params)
}
