//! What a balanced result is for the disk goal when racks limit where
//! replicas may go, each target's byte band, and the fewest bytes any
//! balanced result must move (the `lower_bound_bytes` the plan reports).
//!
//! Owns arithmetic over bytes only: it never changes an assignment. The
//! byte analogue of `target.rs` (read its module doc first).
//!
//! # Rack byte capacity
//! As in `target.rs`, a partition `p` with `a_p` replicas on listed brokers,
//! spanning `d_p` racks before, spans at least `m_p = min(d_p, racks of the
//! targets)` racks in any result the balancer can return, so rack `k` holds
//! at most `c_p,k = min(|k|, a_p − m_p + 1)` of its replicas. With `s_p` the
//! bytes of one replica, rack `k` holds at most `B_k = Σ_p s_p · c_p,k`
//! bytes (with Kafka's rack-aware placement: one replica of each partition,
//! the sum of all partition sizes). Without racks there is one rack of every
//! target and `B_k` is every byte.
//!
//! # Balanced
//! Water-filling, as for counts: `T` is every byte to hold on targets (those
//! on removed brokers included), `μ` the least integer with `Σ_k min(B_k,
//! |k| · μ) ≥ T`. A rack with `B_k < |k| · μ` is *capped*: its brokers aim at
//! `τ_b = ⌊B_k / |k|⌋`; every other broker at `τ_b = μ`. The tolerance `δ` is
//! as before (5 % of the plain mean `T / n`, at least half the largest
//! partition). A result is *balanced* when every target ends within `[lo_b,
//! hi_b] = [τ_b − δ, τ_b + δ]` (and the rack rule holds). Without racks
//! `τ_b = ⌈T / n⌉`, the old band (give or take a byte of rounding). On
//! uneven racks a big rack's brokers aim lower (they cannot hold more than
//! one replica of each partition) and the others higher: the old band around
//! `T / n` was out of reach for the big rack, so brokers elsewhere had to
//! end above it.
//!
//! # Lower bound (the proof)
//! Take any balanced result, with final bytes `f_b`. A move places a replica
//! on a broker that did not hold it, and a partition keeps its length, so
//! the bytes moved are the bytes partitions lose: every byte on a removed
//! broker (`drained`), and at least `held_b − f_b` from each target
//! (`held_b`: its bytes before). So `moved ≥ drained + Σ_b (held_b − f_b)⁺`
//! (equivalently, counting arrivals, `moved ≥ Σ_b (f_b − held_b)⁺`: the two
//! are equal for every `f`, as `Σ_b (f_b − held_b) = drained`). Rack `k`
//! ends with `F_k = Σ_{b∈k} f_b ∈ [L_k, U_k]`, `L_k = Σ_{b∈k} lo_b`, `U_k =
//! min(B_k, Σ_{b∈k} hi_b)` (`F_k ≤ B_k` by the rack rule), and `Σ_k F_k =
//! T`. Minimising over all such `f` (a relaxation: bytes are not split
//! into partitions, so the true optimum can only be larger) is the same
//! exchange argument as for counts: with `g_b = clamp(held_b, lo_b, hi_b)`,
//! `G_k = Σ_{b∈k} g_b` and `h_k = clamp(G_k, L_k, U_k)`, within a rack
//! `f = g` costs `Σ (held_b − hi_b)⁺`, raising a broker is free and lowering
//! one below `g_b` costs a byte per byte; across racks a rack whose brokers
//! would keep more than `U_k` loses the difference, and racks that together
//! would keep more than `T` lose the surplus. So every balanced result moves
//! at least
//!
//! ```text
//! byte bound = drained + Σ_b (held_b − hi_b)⁺ + Σ_k (G_k − U_k)⁺ + (Σ_k h_k − T)⁺
//! ```
//!
//! Every term is forced: bytes on removed brokers; bytes a broker holds
//! above the most it may keep; bytes a rack holds above what its brokers and
//! its capacity let it keep; and, when the racks that may not shed below
//! their floors and caps still hold more than `T`, the surplus (the arrival
//! form of the same number counts the bytes that must reach brokers below
//! their floors and racks below theirs, which is how the bound sees the
//! bytes a big, capped rack must receive). It is at least the old
//! rack-blind bound's two halves (what must leave brokers above the band,
//! what must reach those below) for the same band.
//!
//! A second bound weighs `target.rs`'s rack flow by bytes. With `x_p,k`
//! and `y_p,k` `p`'s replicas on rack `k`'s targets before and after, rack
//! `k` receives `in_k = Σ_p s_p (y_p,k − x_p,k)⁺` bytes of partitions new
//! to it (drained bytes are in no `x`) and loses `out_k = Σ_p s_p (x_p,k −
//! y_p,k)⁺`; its brokers receive `arr_k` bytes and lose `dep_k ≥ D_k =
//! Σ_{b∈k} (held_b − hi_b)⁺`, and `arr_k − dep_k = F_k − H_k = in_k −
//! out_k`, so `arr_k ≥ in_k + (D_k − out_k)⁺` and `moved = Σ_k arr_k ≥
//! Σ_k in_k + Σ_k (D_k − out_k)⁺`. The least right-hand side over such
//! `y` is relaxed to a min-cost flow over groups of partitions of the same
//! shape (`x`, `a`, `c`): a group with `W = Σ_p s_p` sends `a · W` bytes,
//! at most `c · W` to one rack; bytes on rack `k` beyond `x_k · W` cost 1;
//! bytes kept there (up to `x_k · W`) pass a node where those beyond `H_k
//! − D_k = Σ_{b∈k} min(held_b, hi_b)` cost 1; each rack ends within
//! `[L_k, U_k]`. A real result maps onto a flow: per group and rack, its
//! kept bytes `Σ_p s_p min(x_k, y_p,k) ≤ x_k W` through the keep node and
//! its new bytes `Σ_p s_p (y_p,k − x_k)⁺ ≤ (c − x_k) W` directly; rack
//! `k` then keeps `H_k − out_k`, so the flow costs exactly `Σ_k in_k + Σ_k
//! (D_k − out_k)⁺`, and the cheapest flow (where a group's bytes may split
//! as no partition can: a relaxation) bounds every balanced result. It sees
//! what the byte bound does not: on uneven racks a hot broker's partitions
//! that already use the big racks can only move to other hot racks, whose
//! brokers must then shed as much again. Solved within `target.rs`'s edge
//! and work limits (else skipped); the plan reports the larger bound.
//!
//! # Hot brokers (a per-broker keep node)
//! The rack keep node lets any of the rack's partitions count against
//! what its brokers must shed, but a broker above its band must shed its
//! *own* replicas: a partition leaving the rack from another broker does
//! not help it. So up to [`HOT_BROKERS`] targets above their band, on
//! racks of more than one target (most above first), get a keep node of
//! their own, and the shape also records which of them hold a replica.
//! The argument, per broker: in a real result call a replica of `p` on
//! rack `k` *kept* for `min(x_p,k, y_p,k)` of its replicas there, choosing
//! first those that stay on their broker. The replicas on rack `k` after
//! that are not staying are arrivals on `k`'s brokers: `(y − x)⁺` new to
//! the rack and `min(x, y) − stay` kept but moved within it. So `moved =
//! Σ_k in_k + Σ (bytes kept but not staying)`. A broker `h` keeps its own
//! staying bytes, at most `f_h ≤ hi_h`, so of the bytes kept *at `h`* at
//! least `(kept_h − hi_h)⁺` moved within the rack; the other brokers of
//! the rack keep at most `Σ min(held_b, hi_b)` of theirs, as before. The
//! flow charges exactly these terms (a hot node passes `hi_h` free, one
//! replica per partition, since `h` holds one), so the real result still
//! maps to a flow of at most its bytes moved, and the bound stays a lower
//! bound; it is at least the rack-level one (a sum of positive parts is at
//! least the positive part of the sum). With every broker above its band
//! hot, on the structures measured (racks of 1, 2, 4, … brokers) it equals
//! the linear-programming relaxation over partitions and brokers. Brokers
//! alone on their rack need no node of their own (the rack's node is
//! theirs).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::Ctx;
use super::target::{FLOW_EDGE_LIMIT, FLOW_WORK_LIMIT, Flow, Fx, Shape, shape_edges};

/// At most this many brokers get their own keep node in the byte flow
/// (module docs): each may multiply the shape groups, and the flow must
/// stay within `target.rs`'s limits.
const HOT_BROKERS: usize = 8;

/// Bytes per partition shape.
type Groups = HashMap<Shape, u128, BuildHasherDefault<Fx>>;

/// The disk goal's band per target and its byte bound (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DiskTarget {
    /// `(lo_b, τ_b, hi_b)` per target broker.
    pub band: HashMap<i32, (u64, u64, u64)>,
    /// The byte bound: the larger of the count-style bound and the rack
    /// flow bound (when solved).
    pub bound: u64,
}

/// Computes [`DiskTarget`] for `replicas` (one list per partition) holding
/// `sizes` bytes each.
pub(super) fn disk_target(ctx: &Ctx<'_>, replicas: &[Vec<i32>], sizes: &[u64]) -> DiskTarget {
    // Racks of the targets (one rack of every target without the rule),
    // then those only removed brokers use.
    let mut rack_index: HashMap<&str, usize> = HashMap::new();
    let name = |b: i32| ctx.rack_of(b).filter(|_| ctx.racks).unwrap_or("");
    let mut size: Vec<usize> = Vec::new();
    let mut slot: HashMap<i32, (bool, usize)> = HashMap::with_capacity(ctx.rack.len());
    for &b in &ctx.targets {
        let next = rack_index.len();
        let k = *rack_index.entry(name(b)).or_insert(next);
        if k == size.len() {
            size.push(0);
        }
        size[k] += 1;
        slot.insert(b, (true, k));
    }
    let racks = size.len();
    for &b in &ctx.removed {
        let next = rack_index.len();
        let k = *rack_index.entry(name(b)).or_insert(next);
        slot.insert(b, (false, k));
    }
    let mut held: HashMap<i32, u64> = ctx.targets.iter().map(|b| (*b, 0)).collect();
    let mut drained = 0u64;
    let mut cap = vec![0u64; racks];
    let mut spans: Vec<usize> = Vec::new();
    let flow = ctx.racks && racks > 1;
    // What one rack may hold of each partition (`c_p`; 0: nothing listed).
    let mut most_of: Vec<usize> = Vec::with_capacity(replicas.len());
    for (r, &s) in replicas.iter().zip(sizes) {
        spans.clear();
        let mut a = 0usize;
        for b in r {
            let Some(&(target, k)) = slot.get(b) else {
                continue;
            };
            a += 1;
            if !spans.contains(&k) {
                spans.push(k);
            }
            if target {
                if let Some(v) = held.get_mut(b) {
                    *v += s;
                }
            } else {
                drained += s;
            }
        }
        if a == 0 {
            most_of.push(0);
            continue;
        }
        let m = if ctx.racks {
            spans.len().min(racks).max(1)
        } else {
            1
        };
        let most = a - m + 1;
        most_of.push(most);
        for (k, c) in cap.iter_mut().enumerate() {
            *c += s * size[k].min(most) as u64;
        }
    }
    let total: u64 = held.values().sum::<u64>() + drained;
    let n = ctx.targets.len() as u64;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let tolerance = (total / n / 20).max(largest / 2);
    // Water level μ: the least integer with Σ min(B_k, |k| μ) ≥ T.
    let fill = |t: u64| -> u128 {
        (0..racks)
            .map(|k| u128::from(cap[k]).min(size[k] as u128 * u128::from(t)))
            .sum()
    };
    let (mut lo, mut hi) = (0u64, total);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fill(mid) >= u128::from(total) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let level = lo;
    // Per rack: τ of its brokers, L_k and U_k.
    let aim: Vec<u64> = (0..racks)
        .map(|k| {
            if u128::from(cap[k]) < size[k] as u128 * u128::from(level) {
                cap[k] / size[k] as u64
            } else {
                level
            }
        })
        .collect();
    let floor_k: Vec<u64> = (0..racks)
        .map(|k| size[k] as u64 * aim[k].saturating_sub(tolerance))
        .collect();
    let ceil_k: Vec<u64> = (0..racks)
        .map(|k| cap[k].min(size[k] as u64 * (aim[k] + tolerance)))
        .collect();
    let band: HashMap<i32, (u64, u64, u64)> = ctx
        .targets
        .iter()
        .map(|b| {
            let t = aim[slot[b].1];
            (*b, (t.saturating_sub(tolerance), t, t + tolerance))
        })
        .collect();
    let mut over = 0u64;
    let mut g = vec![0u64; racks];
    for b in &ctx.targets {
        let (l, _, u) = band[b];
        over += held[b].saturating_sub(u);
        g[slot[b].1] += held[b].clamp(l, u);
    }
    let rack_over: u64 = (0..racks).map(|k| g[k].saturating_sub(ceil_k[k])).sum();
    // clamp(G, L, U) with L ≤ U not guaranteed when a rack's capacity is
    // below its floor (no balanced result then; the bound stays a number).
    let h: u64 = (0..racks)
        .map(|k| g[k].max(floor_k[k]).min(ceil_k[k]))
        .sum();
    let count_bound = drained + over + rack_over + h.saturating_sub(total);
    // The flow's hot brokers: those above their band on racks of several
    // targets, most above first (module docs).
    let mut hot: Vec<(u64, i32)> = ctx
        .targets
        .iter()
        .filter(|b| size[slot[*b].1] > 1 && held[*b] > band[*b].2)
        .map(|b| (held[b] - band[b].2, *b))
        .collect();
    hot.sort_unstable_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    hot.truncate(HOT_BROKERS);
    let hot_index: HashMap<i32, usize> = hot.iter().enumerate().map(|(j, h)| (h.1, j)).collect();
    let mut groups: Groups = HashMap::default();
    if flow {
        let mut shape = Shape {
            x: Vec::new(),
            a: 0,
            s: 0,
            hot: Vec::new(),
        };
        for ((r, &s), &most) in replicas.iter().zip(sizes).zip(&most_of) {
            if most == 0 || s == 0 {
                continue;
            }
            shape.x.clear();
            shape.hot.clear();
            let mut a = 0usize;
            for b in r {
                let Some(&(target, k)) = slot.get(b) else {
                    continue;
                };
                a += 1;
                if !target {
                    continue;
                }
                match shape.x.iter_mut().find(|(kk, _)| *kk == k) {
                    Some(e) => e.1 += 1,
                    None => shape.x.push((k, 1)),
                }
                if let Some(&j) = hot_index.get(b) {
                    shape.hot.push(j);
                }
            }
            shape.x.sort_unstable();
            shape.hot.sort_unstable();
            (shape.a, shape.s) = (a, most);
            match groups.get_mut(&shape) {
                Some(v) => *v += u128::from(s),
                None => {
                    groups.insert(shape.clone(), u128::from(s));
                }
            }
        }
    }
    let flow_bound = if !groups.is_empty() && groups.len() * racks <= FLOW_EDGE_LIMIT {
        // What each rack's brokers other than the hot ones may keep:
        // Σ min(held_b, hi_b); a hot broker keeps at most hi_b.
        let mut keep = vec![0u64; racks];
        for b in &ctx.targets {
            if !hot_index.contains_key(b) {
                keep[slot[b].1] += held[b].min(band[b].2);
            }
        }
        let hot_keep: Vec<(usize, u64)> = hot.iter().map(|(_, b)| (slot[b].1, band[b].2)).collect();
        byte_flow(&groups, &size, &floor_k, &ceil_k, &keep, &hot_keep, total)
    } else {
        None
    };
    DiskTarget {
        band,
        bound: count_bound.max(flow_bound.unwrap_or(0)),
    }
}

/// The rack flow bound in bytes (module docs): the least bytes arriving
/// at racks that did not hold them, plus bytes kept on a rack beyond what
/// its brokers may keep, over per-group byte amounts per rack within the
/// rack rule, each rack ending within `[floor_k, ceil_k]`. `None` when no
/// such amounts exist or the solver ran out of work.
fn byte_flow(
    groups: &Groups,
    size: &[usize],
    floor_k: &[u64],
    ceil_k: &[u64],
    keep: &[u64],
    hot: &[(usize, u64)],
    total: u64,
) -> Option<u64> {
    let racks = size.len();
    let mut keys: Vec<&Shape> = groups.keys().collect();
    keys.sort_unstable();
    let src = 0;
    let rack_node = |k: usize| 1 + keys.len() + k;
    let sink = 1 + keys.len() + 2 * racks + hot.len();
    let mut f = Flow::new(sink + 1);
    let all = i128::from(total);
    let keep_i: Vec<i128> = keep.iter().map(|&v| i128::from(v)).collect();
    let hot_i: Vec<(usize, i128)> = hot.iter().map(|&(k, v)| (k, i128::from(v))).collect();
    shape_edges(
        &mut f,
        &keys,
        |key| groups[key] as i128,
        size,
        &keep_i,
        &hot_i,
        all,
    );
    // The first floor_k bytes into a rack earn −BIG, so a cheapest flow
    // meets every floor when any flow does (every byte costs 0 or 1).
    let big = all + 1;
    for k in 0..racks {
        if floor_k[k] > 0 {
            f.edge(rack_node(k), sink, i128::from(floor_k[k]), -big);
        }
        if ceil_k[k] > floor_k[k] {
            f.edge(rack_node(k), sink, i128::from(ceil_k[k] - floor_k[k]), 0);
        }
    }
    let (sent, cost) = f.min_cost(src, sink, all, FLOW_WORK_LIMIT)?;
    let floors: i128 = floor_k.iter().map(|v| i128::from(*v)).sum();
    let moved = cost + big * floors;
    (sent == all && (0..=all).contains(&moved)).then_some(moved as u64)
}
