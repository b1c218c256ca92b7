//! What a balanced result is when racks limit where replicas may go, the
//! balancer's per-broker quotas, and the fewest replica moves any balanced
//! result needs (the lower bound the plan reports).
//!
//! Owns arithmetic over counts only: it never changes an assignment.
//!
//! # Rack capacity
//! The balancer never lowers the number of racks a partition spans (unless
//! the racks left are too few; see the parent module). So in any result it
//! can return, a partition `p` with `a_p` replicas on listed brokers (all on
//! targets once removed brokers are drained), spanning `d_p` racks before,
//! spans at least `m_p = min(d_p, racks of the targets)` racks. One rack then
//! holds at most `c_p,k = min(|k|, a_p − m_p + 1)` of its replicas: no broker
//! twice, and each of the `m_p − 1` other racks it spans holds at least one.
//! Rack `k` holds at most `C_k = Σ_p c_p,k` replicas (with Kafka's
//! rack-aware placement, `m_p = a_p = RF` and `C_k` is the partition count:
//! one replica of each partition). Without racks there is one rack of every
//! target and no limit.
//!
//! # Balanced
//! Water-filling: `t*` is the smallest integer level with
//! `Σ_k min(C_k, |k| · t*) ≥ R` (`R`: replicas to hold on targets). A rack
//! with `C_k ≤ |k| · (t* − 1)` is *capped*: its brokers get
//! `⌊C_k / |k|⌋ ..= ⌈C_k / |k|⌉`; every other broker gets `t* − 1 ..= t*`.
//! A result is *balanced* when every target's count is in its range `[l_b,
//! u_b]` (and the rack rule holds). Without racks this is the old rule
//! (`⌊R/n⌋ ..= ⌈R/n⌉`); on uneven racks the brokers of small racks may hold
//! more than `R/n` and those of a big rack fewer, which is as even as the
//! rack rule allows (the largest count is the least possible, and so on).
//! The balancer's quotas `q_b` are a balanced vector: `l_b` each, then one
//! more while a rack has room (`U_k`, below) and until they sum to `R`:
//! first to brokers holding `u_b` or more (there it saves a move), then to
//! the others, most held first.
//!
//! # Lower bound (the proof)
//! Take any balanced result, with final counts `f_b`. A move is a replica
//! placed on a broker that did not hold it; a partition keeps its length, so
//! its moves equal the replicas it loses: every replica on a removed broker
//! (`drained`), and at least `held_b − f_b` from each target. So
//! `moves ≥ drained + Σ_b (held_b − f_b)⁺`. Group the targets by rack; rack
//! `k` ends with `F_k = Σ_{b∈k} f_b`, within `[L_k, U_k]`, `L_k = Σ l_b`,
//! `U_k = min(C_k, Σ u_b)`. Within a rack, with `g_b = clamp(held_b, l_b,
//! u_b)` and `G_k = Σ g_b`, the least `Σ_{b∈k} (held_b − f_b)⁺` over `f_b ∈
//! [l_b, u_b]` summing to `F_k` is `Σ_{b∈k} (held_b − u_b)⁺ + (G_k − F_k)⁺`
//! (`f = g` costs `Σ (held_b − u_b)⁺`; raising a count costs nothing;
//! lowering one below `g_b`, never below `l_b`, costs a move per replica,
//! and only brokers with `g_b ≤ held_b` can be lowered at all). Over the racks, the least `Σ_k (G_k − F_k)⁺` with `F_k ∈ [L_k,
//! U_k]`, `Σ F_k = R`, is `Σ_k (G_k − U_k)⁺ + (Σ_k h_k − R)⁺` with `h_k =
//! clamp(G_k, L_k, U_k)`. So every balanced result moves at least
//!
//! ```text
//! count bound = drained + Σ_b (held_b − u_b)⁺ + Σ_k (G_k − U_k)⁺ + (Σ_k h_k − R)⁺
//! ```
//!
//! and the quotas above reach it (the greedy grants the spare replicas where
//! they save a move, rack room permitting: a partition matroid). Without
//! racks this equals the old bound (replicas on removed brokers plus each
//! broker's excess over its quota).
//!
//! A second bound counts racks rather than brokers: let `x_p,k` be `p`'s
//! replicas on rack `k`'s targets before and `y_p,k` after (`y_p,k ≤
//! c_p,k`, `Σ_k y_p,k = a_p`, each rack ending within `[L_k, U_k]`). Rack
//! `k` gains `in_k = Σ_p (y_p,k − x_p,k)⁺` brokers newly holding a
//! partition (drained replicas are in no `x`, so they count here) and loses
//! `out_k = Σ_p (x_p,k − y_p,k)⁺`. Its brokers receive `arr_k` replicas
//! and lose `dep_k`, with `arr_k ≥ in_k`, `dep_k ≥ out_k`, `dep_k ≥ E_k =
//! Σ_{b∈k} (held_b − f_b)⁺ ≥ D_k = Σ_{b∈k} (held_b − u_b)⁺`, and `arr_k −
//! dep_k = F_k − H_k = in_k − out_k`. So `arr_k = dep_k + in_k − out_k ≥
//! in_k + (D_k − out_k)⁺`, and
//!
//! ```text
//! moves = Σ_k arr_k ≥ Σ_k in_k + Σ_k (D_k − out_k)⁺
//! ```
//!
//! (the second sum: a rack whose brokers keep more than `H_k − D_k = Σ_{b∈k}
//! min(held_b, u_b)` of their replicas forces one more departure each). Its
//! least value over such `y` is a min-cost flow: partitions grouped by
//! shape (`x`, `a`, `c`) send `a` units each to racks, at most `c` per
//! partition and rack; a unit on a rack beyond what the group holds there
//! costs 1; units kept pass a per-rack node where those beyond `H_k − D_k`
//! cost 1. A real result maps onto a flow of exactly its value (kept
//! `Σ_p min(x, y)`, new `Σ_p (y − x)⁺`), so the cheapest flow is at most
//! any real result's moves: a lower bound. It sees what counts do not:
//! when a rack must end with a replica of nearly every partition (uneven
//! racks), each partition not on it must move one there, even one whose
//! brokers are all under quota. The flow is solved only while groups ×
//! racks stay small (at most [`FLOW_EDGE_LIMIT`] edges) and the solver
//! within [`FLOW_WORK_LIMIT`]; otherwise that bound is skipped (the count
//! bound still holds).
//!
//! The plan reports the larger of the two.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::Ctx;

/// The flow bound is skipped above this many group-to-rack edges.
pub(super) const FLOW_EDGE_LIMIT: usize = 50_000;

/// The flow bound is abandoned after this many edge scans (about 0.1 s):
/// many racks of similar size give many groups and many short augmenting
/// paths, and a bound must not cost more than the plan.
pub(super) const FLOW_WORK_LIMIT: u64 = 40_000_000;

/// Partitions alike for the rack flow: replicas per rack on targets before
/// (`x`, by rack index), listed replicas (`a`), most on one rack (`c`
/// before the rack's size), and which of the flow's *hot* brokers hold one
/// (`hot`, by index into the hot list; always empty for the count bound).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Shape {
    pub x: Vec<(usize, usize)>,
    pub a: usize,
    pub s: usize,
    pub hot: Vec<usize>,
}

/// A fast hash for [`Shape`] keys (FxHash's mixing step): one lookup per
/// partition, where SipHash was a third of the bound's cost. Not exposed
/// to untrusted keys' adversarial collisions beyond slowing this down.
#[derive(Debug, Default)]
pub(super) struct Fx(u64);

impl Fx {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.add(u64::from(*b));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// No target position: a removed broker.
const NONE: usize = usize::MAX;

/// Broker id to its position in a list: a table when the ids are dense
/// (the usual case: one lookup per replica is most of the bound's cost),
/// else a hash map.
enum Lookup {
    Table { min: i32, at: Vec<usize> },
    Map(HashMap<i32, usize>),
}

impl Lookup {
    fn new(ids: &[i32]) -> Self {
        let (min, max) = (
            ids.iter().copied().min().unwrap_or(0),
            ids.iter().copied().max().unwrap_or(0),
        );
        let span = (i64::from(max) - i64::from(min) + 1) as usize;
        if span <= 16 * ids.len() + 4096 {
            let mut at = vec![NONE; span];
            for (i, b) in ids.iter().enumerate() {
                at[(b - min) as usize] = i;
            }
            Lookup::Table { min, at }
        } else {
            Lookup::Map(ids.iter().enumerate().map(|(i, b)| (*b, i)).collect())
        }
    }

    fn get(&self, b: i32) -> Option<usize> {
        match self {
            Lookup::Table { min, at } => {
                let i = i64::from(b) - i64::from(*min);
                usize::try_from(i)
                    .ok()
                    .and_then(|i| at.get(i))
                    .copied()
                    .filter(|i| *i != NONE)
            }
            Lookup::Map(m) => m.get(&b).copied(),
        }
    }
}

/// Partitions per shape.
type Groups = HashMap<Shape, usize, BuildHasherDefault<Fx>>;

/// Balanced ranges, quotas and the bound for one request (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// `[l_b, u_b]` per target broker.
    pub range: HashMap<i32, (usize, usize)>,
    /// The balancer's quota per target broker (within its range).
    pub quota: HashMap<i32, usize>,
    /// The count bound.
    pub count_bound: usize,
    /// The rack flow bound, when solved.
    pub flow_bound: Option<usize>,
}

impl Target {
    /// The larger of the two bounds.
    pub fn lower_bound(&self) -> usize {
        self.count_bound.max(self.flow_bound.unwrap_or(0))
    }
}

/// Computes [`Target`] for the current `replicas` (module docs).
pub(super) fn target<'r>(ctx: &Ctx<'_>, replicas: impl Iterator<Item = &'r [i32]>) -> Target {
    // Racks of the targets first (one rack of every target without the
    // rule), then those only removed brokers use.
    let mut rack_index: HashMap<&str, usize> = HashMap::new();
    let mut size: Vec<usize> = Vec::new();
    fn index<'n>(
        known: &mut HashMap<&'n str, usize>,
        size: &mut Vec<usize>,
        name: &'n str,
    ) -> usize {
        let next = known.len();
        let k = *known.entry(name).or_insert(next);
        if k == size.len() {
            size.push(0);
        }
        k
    }
    let name = |b: i32| ctx.rack_of(b).filter(|_| ctx.racks).unwrap_or("");
    // Per listed broker: (target position or NONE, rack index).
    let mut slots: Vec<(usize, usize)> = Vec::with_capacity(ctx.rack.len());
    let mut ids: Vec<i32> = Vec::with_capacity(ctx.rack.len());
    for (i, &b) in ctx.targets.iter().enumerate() {
        let k = index(&mut rack_index, &mut size, name(b));
        size[k] += 1;
        slots.push((i, k));
        ids.push(b);
    }
    let racks = size.len();
    for &b in &ctx.removed {
        let k = index(&mut rack_index, &mut size, name(b));
        slots.push((NONE, k));
        ids.push(b);
    }
    size.truncate(racks);
    let find = Lookup::new(&ids);
    let rack_of: Vec<usize> = slots[..ctx.targets.len()].iter().map(|s| s.1).collect();
    let mut held_at = vec![0usize; ctx.targets.len()];
    let mut drained = 0usize;
    // Partitions by `s_p = a_p − m_p + 1` (what one rack may hold), and by
    // their shape for the flow.
    let mut by_s: Vec<usize> = Vec::new();
    let mut groups: Groups = HashMap::default();
    let mut shape = Shape {
        x: Vec::new(),
        a: 0,
        s: 0,
        hot: Vec::new(),
    };
    let mut spans: Vec<usize> = Vec::new();
    for r in replicas {
        shape.x.clear();
        spans.clear();
        let mut a = 0usize;
        for &b in r {
            let Some(at) = find.get(b) else {
                continue;
            };
            let (t, k) = slots[at];
            a += 1;
            if !spans.contains(&k) {
                spans.push(k);
            }
            if t == NONE {
                drained += 1;
                continue;
            }
            held_at[t] += 1;
            match shape.x.iter_mut().find(|(kk, _)| *kk == k) {
                Some(e) => e.1 += 1,
                None => shape.x.push((k, 1)),
            }
        }
        if a == 0 {
            continue;
        }
        let m = if ctx.racks {
            spans.len().min(racks).max(1)
        } else {
            1
        };
        let s = a - m + 1;
        if by_s.len() <= s {
            by_s.resize(s + 1, 0);
        }
        by_s[s] += 1;
        if ctx.racks && racks > 1 {
            shape.x.sort_unstable();
            (shape.a, shape.s) = (a, s);
            match groups.get_mut(&shape) {
                Some(n) => *n += 1,
                None => {
                    groups.insert(shape.clone(), 1);
                }
            }
        }
    }
    let held: HashMap<i32, usize> = ctx.targets.iter().copied().zip(held_at).collect();
    let rack_of: HashMap<i32, usize> = ctx.targets.iter().copied().zip(rack_of).collect();
    let total: usize = held.values().sum::<usize>() + drained;
    // Rack capacities.
    let cap: Vec<usize> = size
        .iter()
        .map(|&n| {
            by_s.iter()
                .enumerate()
                .map(|(s, &count)| count * n.min(s))
                .sum()
        })
        .collect();
    // Water level t*: the least t with Σ min(C_k, |k| t) ≥ R.
    let fill = |t: usize| -> usize { (0..racks).map(|k| cap[k].min(size[k] * t)).sum() };
    let (mut lo, mut hi) = (0usize, total);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fill(mid) >= total {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let level = lo;
    // Per rack: the range of each of its brokers, L_k and U_k.
    let bounds: Vec<(usize, usize)> = (0..racks)
        .map(|k| {
            if level == 0 {
                (0, 0)
            } else if cap[k] <= size[k] * (level - 1) {
                (cap[k] / size[k], cap[k].div_ceil(size[k]))
            } else {
                (level - 1, level)
            }
        })
        .collect();
    let floor_k: Vec<usize> = (0..racks).map(|k| size[k] * bounds[k].0).collect();
    let ceil_k: Vec<usize> = (0..racks)
        .map(|k| cap[k].min(size[k] * bounds[k].1))
        .collect();
    let range: HashMap<i32, (usize, usize)> = ctx
        .targets
        .iter()
        .map(|b| (*b, bounds[rack_of[b]]))
        .collect();
    // The count bound, in closed form.
    let mut over = 0usize;
    let mut g = vec![0usize; racks];
    for b in &ctx.targets {
        let (l, u) = range[b];
        over += held[b].saturating_sub(u);
        g[rack_of[b]] += held[b].clamp(l, u);
    }
    let rack_over: usize = (0..racks).map(|k| g[k].saturating_sub(ceil_k[k])).sum();
    let h: usize = (0..racks).map(|k| g[k].clamp(floor_k[k], ceil_k[k])).sum();
    let count_bound = drained + over + rack_over + h.saturating_sub(total);
    // Quotas: l_b each, then one more to the brokers holding the most,
    // while their rack has room.
    let mut quota: HashMap<i32, usize> = range.iter().map(|(b, (l, _))| (*b, *l)).collect();
    let mut spare = total.saturating_sub(floor_k.iter().sum());
    let mut room: Vec<usize> = (0..racks)
        .map(|k| ceil_k[k].saturating_sub(floor_k[k]))
        .collect();
    // Brokers a spare slot saves a move for (holding their maximum or more)
    // first; then by what they hold, so without racks this is "the spare
    // slots go to the brokers holding the most".
    let mut order = ctx.targets.clone();
    order.sort_by_key(|b| (Reverse(held[b] >= range[b].1), Reverse(held[b]), *b));
    for b in order {
        if spare == 0 {
            break;
        }
        let k = rack_of[&b];
        let (l, u) = range[&b];
        if u > l && room[k] > 0 {
            room[k] -= 1;
            spare -= 1;
            if let Some(q) = quota.get_mut(&b) {
                *q += 1;
            }
        }
    }
    debug_assert_eq!(
        count_bound,
        drained
            + ctx
                .targets
                .iter()
                .map(|b| held[b].saturating_sub(quota[b]))
                .sum::<usize>(),
        "the quotas reach the count bound"
    );
    let flow_bound = if groups.len() * racks <= FLOW_EDGE_LIMIT && !groups.is_empty() {
        // What each rack holds, and what its brokers must shed.
        let mut keep = vec![0usize; racks];
        for b in &ctx.targets {
            keep[rack_of[b]] += held[b].min(range[b].1);
        }
        rack_flow(&groups, &size, &floor_k, &ceil_k, &keep, total)
    } else {
        None
    };
    Target {
        range,
        quota,
        count_bound,
        flow_bound,
    }
}

/// The rack flow bound (module docs): the least `Σ (y − x)⁺` over rack
/// counts `y` per group, each rack ending within `[floor_k, ceil_k]`.
/// `None` when no such `y` exists (no balanced result at all).
fn rack_flow(
    groups: &Groups,
    size: &[usize],
    floor_k: &[usize],
    ceil_k: &[usize],
    keep: &[usize],
    total: usize,
) -> Option<usize> {
    let racks = size.len();
    let mut keys: Vec<&Shape> = groups.keys().collect();
    keys.sort_unstable();
    let src = 0;
    let rack_node = |k: usize| 1 + keys.len() + k;
    let sink = 1 + keys.len() + 2 * racks;
    let mut f = Flow::new(sink + 1);
    // Replicas kept on rack k beyond what its brokers may keep
    // (Σ min(held_b, u_b)) cost a move each: some other replica must then
    // leave one of its brokers.
    let keep_i: Vec<i128> = keep.iter().map(|&v| v as i128).collect();
    shape_edges(
        &mut f,
        &keys,
        |key| groups[key] as i128,
        size,
        &keep_i,
        &[],
        total as i128,
    );
    // The first floor_k units into a rack earn −BIG, so a cheapest flow
    // meets every floor when any flow does.
    let big = total as i128 + 1;
    for k in 0..racks {
        if floor_k[k] > 0 {
            f.edge(rack_node(k), sink, floor_k[k] as i128, -big);
        }
        if ceil_k[k] > floor_k[k] {
            f.edge(rack_node(k), sink, (ceil_k[k] - floor_k[k]) as i128, 0);
        }
    }
    let (flow, cost) = f.min_cost(src, sink, total as i128, FLOW_WORK_LIMIT)?;
    let floors: i128 = floor_k.iter().map(|v| *v as i128).sum();
    let moves = cost + big * floors;
    // Every unit of flow costs at most 1 beyond −BIG, so a floor left unmet
    // shows as a cost above the flow.
    (flow == total as i128 && (0..=total as i128).contains(&moves)).then_some(moves as usize)
}

/// Successive shortest paths (Bellman-Ford queue) on a small graph. In
/// `i128`: the disk goal's flow (`disk_target.rs`) counts bytes, where
/// `BIG × floors` is beyond `i64`.
pub(super) struct Flow {
    adj: Vec<Vec<usize>>,
    to: Vec<usize>,
    cap: Vec<i128>,
    cost: Vec<i128>,
}

impl Flow {
    pub(super) fn new(nodes: usize) -> Self {
        Flow {
            adj: vec![Vec::new(); nodes],
            to: Vec::new(),
            cap: Vec::new(),
            cost: Vec::new(),
        }
    }

    pub(super) fn edge(&mut self, a: usize, b: usize, cap: i128, cost: i128) {
        for (from, to, cap, cost) in [(a, b, cap, cost), (b, a, 0, -cost)] {
            self.adj[from].push(self.to.len());
            self.to.push(to);
            self.cap.push(cap);
            self.cost.push(cost);
        }
    }

    /// Sends up to `want` units, cheapest paths first: (sent, cost).
    /// `None` once `work` edge scans are spent (a partial flow bounds
    /// nothing).
    pub(super) fn min_cost(
        &mut self,
        s: usize,
        t: usize,
        want: i128,
        mut work: u64,
    ) -> Option<(i128, i128)> {
        let n = self.adj.len();
        let (mut sent, mut total) = (0i128, 0i128);
        while sent < want {
            let mut dist = vec![i128::MAX; n];
            let mut via = vec![usize::MAX; n];
            let mut queued = vec![false; n];
            let mut queue = std::collections::VecDeque::from([s]);
            dist[s] = 0;
            while let Some(u) = queue.pop_front() {
                queued[u] = false;
                work = work.checked_sub(self.adj[u].len() as u64)?;
                for &e in &self.adj[u] {
                    let v = self.to[e];
                    if self.cap[e] > 0 && dist[u] + self.cost[e] < dist[v] {
                        dist[v] = dist[u] + self.cost[e];
                        via[v] = e;
                        if !queued[v] {
                            queued[v] = true;
                            queue.push_back(v);
                        }
                    }
                }
            }
            if dist[t] == i128::MAX {
                break;
            }
            let mut push = want - sent;
            let mut v = t;
            while v != s {
                let e = via[v];
                push = push.min(self.cap[e]);
                v = self.to[e ^ 1];
            }
            let mut v = t;
            while v != s {
                let e = via[v];
                self.cap[e] -= push;
                self.cap[e ^ 1] += push;
                v = self.to[e ^ 1];
            }
            sent += push;
            total += push * dist[t];
        }
        Some((sent, total))
    }
}

/// The part of the rack flow network both bounds share (replica counts
/// here, bytes in `disk_target`), with its node numbering (source 0, shape
/// groups `1..=keys`, then one rack node and one keep node per rack, then
/// one node per hot broker): each shape group gets `weight × a` from the
/// source and sends, per rack, what it already holds there through a keep
/// node at cost 0 (what it holds on hot broker `j` through hot node `j`,
/// the rest through the rack's keep node) and the rest of what the rack may
/// take straight to the rack at cost 1; a rack's keep node passes `keep[k]`
/// free and anything more at cost 1, and hot node `j`, for a broker on rack
/// `hot[j].0`, passes `hot[j].1` free and anything more at cost 1.
pub(super) fn shape_edges(
    f: &mut Flow,
    keys: &[&Shape],
    weight: impl Fn(&Shape) -> i128,
    size: &[usize],
    keep: &[i128],
    hot: &[(usize, i128)],
    total: i128,
) {
    let racks = size.len();
    let rack_node = |k: usize| 1 + keys.len() + k;
    let keep_node = |k: usize| 1 + keys.len() + racks + k;
    let hot_node = |j: usize| 1 + keys.len() + 2 * racks + j;
    for (k, &free) in keep.iter().enumerate() {
        f.edge(keep_node(k), rack_node(k), free, 0);
        f.edge(keep_node(k), rack_node(k), total, 1);
    }
    for (j, &(k, free)) in hot.iter().enumerate() {
        f.edge(hot_node(j), rack_node(k), free, 0);
        f.edge(hot_node(j), rack_node(k), total, 1);
    }
    for (i, key) in keys.iter().enumerate() {
        let Shape { x, a, s, hot: on } = key;
        let w = weight(key);
        f.edge(0, 1 + i, w * *a as i128, 0);
        for (k, &sz) in size.iter().enumerate() {
            let c = sz.min(*s) as i128;
            let here = x
                .iter()
                .find(|(kk, _)| *kk == k)
                .map_or(0, |(_, v)| (*v as i128).min(c));
            // Held on this rack's hot brokers: one replica each.
            let mut rest = here;
            for &j in on.iter().filter(|j| hot[**j].0 == k) {
                if rest > 0 {
                    f.edge(1 + i, hot_node(j), w, 0);
                    rest -= 1;
                }
            }
            if rest > 0 {
                f.edge(1 + i, keep_node(k), w * rest, 0);
            }
            if c > here {
                f.edge(1 + i, rack_node(k), w * (c - here), 1);
            }
        }
    }
}
