//! The cluster balancer: a plan that evens out replica counts, preferred
//! leader counts or bytes per broker, drains brokers being removed and
//! fills new ones, moving as little as possible.
//!
//! # Replicas ([`Goal::Replicas`], and the first step of every goal)
//! Targets are the brokers not being removed. With `R` replicas on them and
//! on the removed brokers, each of the `n` targets gets a quota of `R / n`,
//! and `R % n` of them one more: those holding the most already (so the
//! extra slots cost no moves). A replica must move off a removed broker,
//! and `held − quota` replicas must move off each target over its quota;
//! so any result in which every target holds its quota moves at least
//! `Σ replicas on removed brokers + Σ_b max(0, held_b − quota_b)` replicas
//! (the lower bound the plan reports). The plan moves exactly those when
//! nothing gets in the way:
//! 1. *pair*: each target under its quota, largest deficit first, walks the
//!    partitions once and takes, from each partition it does not hold, a
//!    replica that must move (on a removed broker first, then a follower,
//!    then a preferred leader on a broker over its quota), if the rack rule
//!    allows. The new broker takes the slot of the replica it replaces, so
//!    the replica order (and the preferred leader, when it stays) is kept.
//! 2. *fill*: replicas that still must move (no broker with room could take
//!    them) go to the broker with the most room the partition does not use
//!    yet, preferring a rack it does not use yet, else over a quota to the
//!    least loaded broker allowed.
//! 3. *repair*: a broker left over its quota hands a replica to one under
//!    it: a slot being moved anyway first (free), else one of its own
//!    (one move), else by swapping two slots being moved.
//!
//! The rack rule (when every broker has a rack): a replica whose rack is
//! used by no other replica of its partition is only replaced by a broker on
//! a rack the partition does not use, so a partition never spans fewer racks
//! unless the racks left are too few. Each step works on the partition as it
//! is at that moment, so the rule holds over a sequence of changes.
//!
//! Greedy, so not always optimal: the property tests check, on random
//! clusters without racks, that every target ends at its quota and the
//! moves stay within 5 % (plus one) of the bound; the benchmark reports the
//! ratio on large racked clusters. Cost: one pass over the partitions per
//! target under its quota, plus the repairs.
//!
//! # Leaders ([`Goal::Leaders`])
//! After the replicas step, preferred leaders (first replicas) are evened
//! out by reordering replica lists, which moves no data: a broker leading
//! more than `⌈P / n⌉` partitions hands a partition to one of its other
//! replicas leading fewer than `⌊P / n⌋`, or, failing a direct hand-over,
//! along the shortest chain found by breadth-first search over "X leads a
//! partition that Y replicates" (an augmenting path, as in bipartite
//! matching: each one lowers the imbalance by one and keeps every other
//! count). It stops when every count is within `[⌊P/n⌋, ⌈P/n⌉]` or no chain
//! exists.
//!
//! # Disk ([`Goal::Disk`])
//! Removed brokers are drained first (each replica to the valid target with
//! the fewest bytes). Then each target holding more than the mean plus the
//! tolerance (5 % of the mean, at least half the largest partition), fullest
//! first, sheds its replicas largest first — skipping one that would take it
//! below the mean minus the tolerance — each to the emptiest target allowed
//! (not already a replica, rack rule as above) that stays within the mean
//! plus the tolerance, until it is within it. Then each target below the
//! mean minus the tolerance, emptiest first, takes from the fullest targets,
//! one replica per donor per round: the largest that keeps the donor at or
//! above the mean. Largest first keeps the number of moves low; the bytes
//! moved stay close to the bound below because brokers give little more
//! than their excess. The lower
//! bound on bytes moved, for any result with every target within the
//! tolerance, is the larger of what must leave
//! (`Σ bytes on removed + Σ_b max(0, bytes_b − mean − tolerance)`) and what
//! must arrive (`Σ_b max(0, mean − tolerance − bytes_b)`).
//!
//! Replicas on brokers absent from the broker list (e.g. fenced brokers that
//! are not being drained) stay where they are and count for nobody.
//!
//! Pure and deterministic: no I/O, no randomness.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::error::Error;
use crate::placement::BrokerMetadata;
use crate::reassign::PartitionReplicas;

/// What to even out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Replica counts per broker.
    Replicas,
    /// Replica counts, then preferred-leader counts.
    Leaders,
    /// Bytes per broker.
    Disk,
}

/// One partition as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancePartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// Bytes of one replica (the leader's log size).
    pub size_bytes: u64,
}

/// The input of [`propose_balance`].
#[derive(Debug, Clone, Copy)]
pub struct BalanceRequest<'a> {
    /// Brokers that may hold replicas, and those being removed.
    pub brokers: &'a [BrokerMetadata],
    /// Every partition to consider.
    pub partitions: &'a [BalancePartition],
    /// What to even out.
    pub goal: Goal,
    /// Brokers to drain completely.
    pub remove: &'a [i32],
    /// Brokers to fill (must be in `brokers`; they are targets anyway).
    pub add: &'a [i32],
}

/// Load of one broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerUsage {
    /// Replicas held.
    pub replicas: usize,
    /// Partitions it is the preferred leader of.
    pub leaders: usize,
    /// Bytes held.
    pub bytes: u64,
}

/// A balancing plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancePlan {
    /// The partitions whose replica list (set or order) changes.
    pub partitions: Vec<PartitionReplicas>,
    /// Replicas placed on a broker that did not hold them.
    pub replica_moves: usize,
    /// Bytes those replicas hold.
    pub bytes_moved: u64,
    /// Fewest replica moves (see the module docs).
    pub lower_bound_moves: usize,
    /// Fewest bytes moved (the disk goal's bound; the replicas goal's moves
    /// are not chosen by size, so for it this is the bytes of the removed
    /// brokers only).
    pub lower_bound_bytes: u64,
    /// Partitions whose preferred leader changes.
    pub leader_changes: usize,
    /// Per broker (targets and removed), before.
    pub before: BTreeMap<i32, BrokerUsage>,
    /// Per broker, after.
    pub after: BTreeMap<i32, BrokerUsage>,
}

/// Why a balancing request is refused.
fn invalid(msg: String) -> Error {
    Error::InvalidBalance(msg)
}

struct Ctx<'a> {
    req: &'a BalanceRequest<'a>,
    /// Rack of each listed broker (None when unknown).
    rack: HashMap<i32, Option<&'a str>>,
    targets: Vec<i32>,
    removed: BTreeSet<i32>,
    /// Every broker has a rack.
    racks: bool,
}

impl Ctx<'_> {
    fn is_target(&self, b: i32) -> bool {
        self.rack.contains_key(&b) && !self.removed.contains(&b)
    }

    fn rack_of(&self, b: i32) -> Option<&str> {
        self.rack.get(&b).copied().flatten()
    }

    /// Racks of `replicas` other than the one at `skip`.
    fn racks_except(&self, replicas: &[i32], skip: usize) -> BTreeSet<&str> {
        replicas
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .filter_map(|(_, b)| self.rack_of(*b))
            .collect()
    }
}

/// Which brokers may take the slot `slot` of `replicas`: not in the
/// partition already, a target; `unused_rack`: only on racks the other
/// replicas do not use.
fn allowed(ctx: &Ctx<'_>, replicas: &[i32], slot: usize, b: i32, unused_rack: bool) -> bool {
    if !ctx.is_target(b)
        || replicas
            .iter()
            .enumerate()
            .any(|(i, r)| i != slot && *r == b)
    {
        return false;
    }
    if unused_rack {
        let used = ctx.racks_except(replicas, slot);
        return ctx.rack_of(b).is_some_and(|r| !used.contains(r));
    }
    true
}

/// Does replacing `replicas[slot]` need a broker on an unused rack to keep
/// the partition's rack count? (True when the replaced replica's rack is not
/// used by the others.)
fn must_keep_rack(ctx: &Ctx<'_>, replicas: &[i32], slot: usize) -> bool {
    if !ctx.racks {
        return false;
    }
    match ctx.rack_of(replicas[slot]) {
        // From a broker outside the list: no rack to keep.
        None => false,
        Some(r) => !ctx.racks_except(replicas, slot).contains(r),
    }
}

/// Proposes a balancing plan (module docs). Errors name the bad input.
pub fn propose_balance(req: &BalanceRequest<'_>) -> Result<BalancePlan, Error> {
    let mut rack = HashMap::with_capacity(req.brokers.len());
    for b in req.brokers {
        if rack.insert(b.id, b.rack.as_deref()).is_some() {
            return Err(Error::DuplicateBrokerId(b.id));
        }
    }
    let removed: BTreeSet<i32> = req.remove.iter().copied().collect();
    for b in req.remove.iter().chain(req.add) {
        if !rack.contains_key(b) {
            return Err(invalid(format!("broker {b} is not in the broker list")));
        }
    }
    if let Some(b) = req.add.iter().find(|b| removed.contains(b)) {
        return Err(invalid(format!("broker {b} is both added and removed")));
    }
    let mut targets: Vec<i32> = rack
        .keys()
        .copied()
        .filter(|b| !removed.contains(b))
        .collect();
    targets.sort_unstable();
    if targets.is_empty() {
        return Err(invalid("no broker is left to hold replicas".into()));
    }
    for p in req.partitions {
        let mut seen = BTreeSet::new();
        if let Some(b) = p.replicas.iter().find(|b| !seen.insert(**b)) {
            return Err(invalid(format!(
                "{}-{}: broker {b} is listed twice",
                p.topic, p.partition
            )));
        }
        let movable = p.replicas.iter().filter(|b| rack.contains_key(b)).count();
        if movable > targets.len() {
            return Err(invalid(format!(
                "{}-{}: {} replicas but only {} brokers to hold them",
                p.topic,
                p.partition,
                movable,
                targets.len()
            )));
        }
    }
    let racks = req.brokers.iter().all(|b| b.rack.is_some());
    let ctx = Ctx {
        req,
        rack,
        targets,
        removed,
        racks,
    };
    let before = usage(
        &ctx,
        req.partitions
            .iter()
            .map(|p| (&p.replicas[..], p.size_bytes)),
    );
    let mut replicas: Vec<Vec<i32>> = req.partitions.iter().map(|p| p.replicas.clone()).collect();
    let (lower_bound_moves, removed_bytes) = match req.goal {
        Goal::Replicas | Goal::Leaders => balance_replicas(&ctx, &mut replicas),
        Goal::Disk => (drain_count(&ctx), 0),
    };
    let mut lower_bound_bytes = removed_bytes;
    if req.goal == Goal::Disk {
        lower_bound_bytes = balance_disk(&ctx, &mut replicas);
    }
    if req.goal == Goal::Leaders {
        balance_leaders(&ctx, &mut replicas);
    }
    let mut plan = BalancePlan {
        partitions: Vec::new(),
        replica_moves: 0,
        bytes_moved: 0,
        lower_bound_moves,
        lower_bound_bytes,
        leader_changes: 0,
        before,
        after: usage(
            &ctx,
            replicas
                .iter()
                .zip(req.partitions)
                .map(|(r, p)| (&r[..], p.size_bytes)),
        ),
    };
    for (p, now) in req.partitions.iter().zip(replicas) {
        if now == p.replicas {
            continue;
        }
        let added = now.iter().filter(|b| !p.replicas.contains(b)).count();
        plan.replica_moves += added;
        plan.bytes_moved += added as u64 * p.size_bytes;
        plan.leader_changes += usize::from(now.first() != p.replicas.first());
        plan.partitions.push(PartitionReplicas {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: now,
        });
    }
    Ok(plan)
}

fn usage<'p>(
    ctx: &Ctx<'_>,
    parts: impl Iterator<Item = (&'p [i32], u64)>,
) -> BTreeMap<i32, BrokerUsage> {
    let mut out: BTreeMap<i32, BrokerUsage> = ctx
        .rack
        .keys()
        .map(|b| (*b, BrokerUsage::default()))
        .collect();
    for (replicas, size) in parts {
        for (i, b) in replicas.iter().enumerate() {
            if let Some(u) = out.get_mut(b) {
                u.replicas += 1;
                u.bytes += size;
                u.leaders += usize::from(i == 0);
            }
        }
    }
    out
}

fn drain_count(ctx: &Ctx<'_>) -> usize {
    ctx.req
        .partitions
        .iter()
        .flat_map(|p| &p.replicas)
        .filter(|b| ctx.removed.contains(b))
        .count()
}

/// The replicas step; returns (lower bound of moves, bytes on removed
/// brokers).
fn balance_replicas(ctx: &Ctx<'_>, replicas: &mut [Vec<i32>]) -> (usize, u64) {
    let n = ctx.targets.len();
    let mut held: HashMap<i32, usize> = ctx.targets.iter().map(|b| (*b, 0)).collect();
    let mut total = 0usize;
    let mut removed_bytes = 0u64;
    for (r, p) in replicas.iter().zip(ctx.req.partitions) {
        for b in r {
            if let Some(h) = held.get_mut(b) {
                *h += 1;
                total += 1;
            } else if ctx.removed.contains(b) {
                total += 1;
                removed_bytes += p.size_bytes;
            }
        }
    }
    // Quotas: the extra slots go to the brokers holding the most.
    let mut order = ctx.targets.clone();
    order.sort_by_key(|b| (std::cmp::Reverse(held[b]), *b));
    let (base, extra) = (total / n, total % n);
    let quota: HashMap<i32, usize> = order
        .iter()
        .enumerate()
        .map(|(i, b)| (*b, base + usize::from(i < extra)))
        .collect();
    let lower_bound = drain_count(ctx)
        + ctx
            .targets
            .iter()
            .map(|b| held[b].saturating_sub(quota[b]))
            .sum::<usize>();
    // Pair: walk the partitions and move each replica that must move (on
    // a removed broker, or on a broker still over its quota) to the broker
    // with the most room that the partition does not hold and the rack rule
    // allows; a replica with no such broker stays (another replica of its
    // broker may go instead). Three passes: at most one follower per
    // partition, then any followers, then preferred leaders (so moves
    // spread over partitions and leaders stay where they are when
    // possible). Replicas on removed brokers go in every pass.
    let mut excess: HashMap<i32, usize> = ctx
        .targets
        .iter()
        .map(|b| (*b, held[b].saturating_sub(quota[b])))
        .collect();
    for r in replicas.iter() {
        for b in r {
            if ctx.removed.contains(b) {
                *excess.entry(*b).or_default() += 1;
            }
        }
    }
    let mut load: HashMap<i32, usize> = held.clone();
    let mut room: BTreeSet<(std::cmp::Reverse<usize>, i32)> = ctx
        .targets
        .iter()
        .filter(|b| quota[b] > held[b])
        .map(|b| (std::cmp::Reverse(quota[b] - held[b]), *b))
        .collect();
    let mut filled: Vec<(usize, usize, bool)> = Vec::new();
    for pass in 0..3 {
        if room.is_empty() {
            break;
        }
        for (pi, r) in replicas.iter_mut().enumerate() {
            let mut moved_here = 0;
            for slot in 0..r.len() {
                let b = r[slot];
                if excess.get(&b).copied().unwrap_or(0) == 0 {
                    continue;
                }
                let drained = ctx.removed.contains(&b);
                if !drained {
                    let ok = match pass {
                        0 => slot > 0 && moved_here == 0,
                        1 => slot > 0,
                        _ => true,
                    };
                    if !ok {
                        continue;
                    }
                }
                let keep = must_keep_rack(ctx, r, slot);
                let prefer_new_rack = ctx.racks;
                let find = |unused: bool| {
                    room.iter()
                        .find(|(_, u)| allowed(ctx, r, slot, *u, unused))
                        .map(|(_, u)| *u)
                };
                let chosen = if prefer_new_rack {
                    find(true).or_else(|| if keep { None } else { find(false) })
                } else {
                    find(false)
                };
                let Some(u) = chosen else {
                    continue;
                };
                let (q, l) = (quota[&u], load[&u]);
                room.remove(&(std::cmp::Reverse(q - l), u));
                if q > l + 1 {
                    room.insert((std::cmp::Reverse(q - l - 1), u));
                }
                load.insert(u, l + 1);
                if let Some(e) = excess.get_mut(&b) {
                    *e -= 1;
                }
                if let Some(lb) = load.get_mut(&b) {
                    *lb -= 1;
                }
                r[slot] = u;
                filled.push((pi, slot, keep));
                moved_here += 1;
                if room.is_empty() {
                    break;
                }
            }
        }
    }
    // What pairing left: replicas still on removed brokers, and excess it
    // could not place, go through the fill below.
    let mut freed: Vec<(usize, usize)> = Vec::new();
    for leaders in [false, true] {
        for (pi, r) in replicas.iter().enumerate() {
            for (slot, b) in r.iter().enumerate() {
                if (slot == 0) != leaders {
                    continue;
                }
                if let Some(e) = excess.get_mut(b)
                    && *e > 0
                {
                    *e -= 1;
                    freed.push((pi, slot));
                    if let Some(l) = load.get_mut(b) {
                        *l -= 1;
                    }
                }
            }
        }
    }
    // Brokers with room, most room first.
    let mut room: BTreeSet<(std::cmp::Reverse<usize>, i32)> = ctx
        .targets
        .iter()
        .filter(|b| quota[b] > load[b])
        .map(|b| (std::cmp::Reverse(quota[b] - load[b]), *b))
        .collect();
    // Fill rack-constrained slots first: they have fewer choices.
    freed.sort_by_key(|&(pi, slot)| {
        (
            std::cmp::Reverse(must_keep_rack(ctx, &replicas[pi], slot)),
            pi,
            slot,
        )
    });
    for (pi, slot) in freed {
        let keep_rack = must_keep_rack(ctx, &replicas[pi], slot);
        let r = &replicas[pi];
        let pick = |unused: bool| {
            room.iter()
                .find(|(_, b)| allowed(ctx, r, slot, *b, unused))
                .map(|(_, b)| *b)
        };
        let chosen = if ctx.racks {
            pick(true).or_else(|| if keep_rack { None } else { pick(false) })
        } else {
            pick(false)
        };
        let chosen = chosen.or_else(|| {
            // Over a quota: the least loaded target the rules allow.
            ctx.targets
                .iter()
                .copied()
                .filter(|b| allowed(ctx, r, slot, *b, keep_rack))
                .min_by_key(|b| (load[b], *b))
                .or_else(|| {
                    ctx.targets
                        .iter()
                        .copied()
                        .filter(|b| allowed(ctx, r, slot, *b, false))
                        .min_by_key(|b| (load[b], *b))
                })
        });
        let Some(b) = chosen else {
            // Validated: there are enough targets; unreachable in practice.
            continue;
        };
        let q = quota[&b];
        let l = load[&b];
        if q > l {
            room.remove(&(std::cmp::Reverse(q - l), b));
        }
        load.insert(b, l + 1);
        if q > l + 1 {
            room.insert((std::cmp::Reverse(q - l - 1), b));
        }
        replicas[pi][slot] = b;
        filled.push((pi, slot, keep_rack));
    }
    repair(ctx, replicas, &filled, &quota, &mut load);
    (lower_bound, removed_bytes)
}

/// A slot is filled over its broker's quota when every broker with room
/// already holds a replica of that partition (then the fill may even put
/// the shed replica back where it was). Each broker `o` still over its
/// quota hands a replica to a broker `u` under its quota that the
/// partition does not hold, rules kept: first a slot being filled anyway
/// (no extra move), else one of its own replicas, followers first (one
/// move, which the refill back onto `o` saved). Failing that, a filled slot
/// of `o` swaps with another filled slot (`t` takes `u`, `o`'s slot takes
/// `t`'s broker).
fn repair(
    ctx: &Ctx<'_>,
    replicas: &mut [Vec<i32>],
    filled: &[(usize, usize, bool)],
    quota: &HashMap<i32, usize>,
    load: &mut HashMap<i32, usize>,
) {
    let over: Vec<i32> = ctx
        .targets
        .iter()
        .copied()
        .filter(|b| load[b] > quota[b])
        .collect();
    for o in over {
        while load[&o] > quota[&o] {
            let under: Vec<i32> = ctx
                .targets
                .iter()
                .copied()
                .filter(|b| load[b] < quota[b])
                .collect();
            if under.is_empty() {
                return;
            }
            let fits = |r: &[i32], slot: usize, u: i32| {
                allowed(ctx, r, slot, u, must_keep_rack(ctx, r, slot))
            };
            let mut found: Option<(usize, usize, i32)> = None;
            'filled: for &(pi, slot, _) in filled {
                if replicas[pi][slot] != o {
                    continue;
                }
                for &u in &under {
                    if fits(&replicas[pi], slot, u) {
                        found = Some((pi, slot, u));
                        break 'filled;
                    }
                }
            }
            if found.is_none() {
                'own: for leaders in [false, true] {
                    for (pi, r) in replicas.iter().enumerate() {
                        for (slot, b) in r.iter().enumerate() {
                            if *b != o || (slot == 0) != leaders {
                                continue;
                            }
                            for &u in &under {
                                if fits(r, slot, u) {
                                    found = Some((pi, slot, u));
                                    break 'own;
                                }
                            }
                        }
                    }
                }
            }
            if let Some((pi, slot, u)) = found {
                replicas[pi][slot] = u;
            } else if let Some((pi, slot, qi, tslot, u)) = swap(ctx, replicas, filled, o, &under) {
                let w = replicas[qi][tslot];
                replicas[qi][tslot] = u;
                replicas[pi][slot] = w;
                found = Some((pi, slot, u));
            }
            let Some((_, _, u)) = found else {
                break;
            };
            *load.entry(o).or_default() -= 1;
            *load.entry(u).or_default() += 1;
        }
    }
}

/// A swap for [`repair`]: a filled slot of `o` and another filled slot.
fn swap(
    ctx: &Ctx<'_>,
    replicas: &[Vec<i32>],
    filled: &[(usize, usize, bool)],
    o: i32,
    under: &[i32],
) -> Option<(usize, usize, usize, usize, i32)> {
    for &(pi, slot, _) in filled {
        if replicas[pi][slot] != o {
            continue;
        }
        // Rack rules as the partitions are now (earlier changes to a
        // partition change which of its racks are unique).
        let keep_s = must_keep_rack(ctx, &replicas[pi], slot);
        for &(qi, tslot, _) in filled {
            if qi == pi {
                continue;
            }
            let keep_t = must_keep_rack(ctx, &replicas[qi], tslot);
            let w = replicas[qi][tslot];
            if !allowed(ctx, &replicas[pi], slot, w, keep_s) {
                continue;
            }
            for &u in under {
                if allowed(ctx, &replicas[qi], tslot, u, keep_t) {
                    return Some((pi, slot, qi, tslot, u));
                }
            }
        }
    }
    None
}

/// Even out preferred leaders by reordering replicas (module docs).
fn balance_leaders(ctx: &Ctx<'_>, replicas: &mut [Vec<i32>]) {
    let n = ctx.targets.len();
    let counted: Vec<usize> = (0..replicas.len())
        .filter(|&i| replicas[i].first().is_some_and(|b| ctx.is_target(*b)))
        .collect();
    let p = counted.len();
    let (lo, hi) = (p / n, p.div_ceil(n));
    let mut count: HashMap<i32, usize> = ctx.targets.iter().map(|b| (*b, 0)).collect();
    let mut led: HashMap<i32, Vec<usize>> = HashMap::new();
    for &i in &counted {
        let l = replicas[i][0];
        *count.entry(l).or_default() += 1;
        led.entry(l).or_default().push(i);
    }
    let hand_over = |replicas: &mut [Vec<i32>], i: usize, to: i32| {
        let pos = replicas[i].iter().position(|b| *b == to).unwrap_or(0);
        replicas[i].swap(0, pos);
    };
    // Direct hand-overs: from a broker above ⌈P/n⌉ (or above ⌊P/n⌋ while
    // the other is below it) to a replica leading fewer.
    let mut overloaded: Vec<i32> = ctx
        .targets
        .iter()
        .copied()
        .filter(|b| count[b] > hi)
        .collect();
    while let Some(x) = overloaded.pop() {
        let list = led.remove(&x).unwrap_or_default();
        let mut keep = Vec::with_capacity(list.len());
        for i in list {
            if count[&x] <= hi {
                keep.push(i);
                continue;
            }
            let to = replicas[i][1..]
                .iter()
                .copied()
                .filter(|b| ctx.is_target(*b) && count[b] < hi)
                .min_by_key(|b| (count[b], *b));
            match to {
                Some(y) => {
                    hand_over(replicas, i, y);
                    if let Some(c) = count.get_mut(&x) {
                        *c -= 1;
                    }
                    *count.entry(y).or_default() += 1;
                    led.entry(y).or_default().push(i);
                }
                None => keep.push(i),
            }
        }
        led.insert(x, keep);
    }
    // Augmenting chains for what is left: from brokers above ⌈P/n⌉ to
    // brokers below it, then from brokers above ⌊P/n⌋ to brokers below
    // that; shortest path over "X leads a partition Y replicates". Each
    // chain moves one leadership from its first to its last broker and
    // leaves the others' counts as they were.
    let mut budget = p + 16;
    while budget > 0 {
        budget -= 1;
        let (sources, sinks): (Vec<i32>, BTreeSet<i32>) =
            if ctx.targets.iter().any(|b| count[b] > hi) {
                (
                    ctx.targets
                        .iter()
                        .copied()
                        .filter(|b| count[b] > hi)
                        .collect(),
                    ctx.targets
                        .iter()
                        .copied()
                        .filter(|b| count[b] < hi)
                        .collect(),
                )
            } else if ctx.targets.iter().any(|b| count[b] < lo) {
                (
                    ctx.targets
                        .iter()
                        .copied()
                        .filter(|b| count[b] > lo)
                        .collect(),
                    ctx.targets
                        .iter()
                        .copied()
                        .filter(|b| count[b] < lo)
                        .collect(),
                )
            } else {
                break;
            };
        let mut prev: HashMap<i32, (i32, usize)> = HashMap::new();
        let mut queue: VecDeque<i32> = sources.iter().copied().collect();
        let mut seen: BTreeSet<i32> = sources.iter().copied().collect();
        let mut sink = None;
        'bfs: while let Some(x) = queue.pop_front() {
            for &i in led.get(&x).map_or(&[][..], Vec::as_slice) {
                for &y in &replicas[i][1..] {
                    if !ctx.is_target(y) || !seen.insert(y) {
                        continue;
                    }
                    prev.insert(y, (x, i));
                    if sinks.contains(&y) {
                        sink = Some(y);
                        break 'bfs;
                    }
                    queue.push_back(y);
                }
            }
        }
        let Some(mut y) = sink else {
            break;
        };
        // Walk back to the source, handing each partition on.
        while let Some(&(x, i)) = prev.get(&y) {
            hand_over(replicas, i, y);
            if let Some(v) = led.get_mut(&x) {
                v.retain(|&j| j != i);
            }
            led.entry(y).or_default().push(i);
            *count.entry(y).or_default() += 1;
            if let Some(c) = count.get_mut(&x) {
                *c -= 1;
            }
            y = x;
        }
    }
}

/// The disk step; returns the lower bound of bytes moved.
fn balance_disk(ctx: &Ctx<'_>, replicas: &mut [Vec<i32>]) -> u64 {
    let sizes: Vec<u64> = ctx.req.partitions.iter().map(|p| p.size_bytes).collect();
    let mut bytes: HashMap<i32, u64> = ctx.targets.iter().map(|b| (*b, 0)).collect();
    let mut removed_bytes = 0u64;
    let mut on: HashMap<i32, Vec<usize>> = HashMap::new();
    for (i, r) in replicas.iter().enumerate() {
        for b in r {
            if let Some(v) = bytes.get_mut(b) {
                *v += sizes[i];
                on.entry(*b).or_default().push(i);
            } else if ctx.removed.contains(b) {
                removed_bytes += sizes[i];
            }
        }
    }
    let total: u64 = bytes.values().sum::<u64>() + removed_bytes;
    let mean = total / ctx.targets.len() as u64;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let tolerance = (mean / 20).max(largest / 2);
    // Any result with every target within the tolerance moves at least
    // this much: brokers above it must give their excess, and those below
    // mean − tolerance must receive their deficit.
    let give = removed_bytes
        + bytes
            .values()
            .map(|v| v.saturating_sub(mean + tolerance))
            .sum::<u64>();
    let take = bytes
        .values()
        .map(|v| mean.saturating_sub(tolerance).saturating_sub(*v))
        .sum::<u64>();
    let lower_bound = give.max(take);
    let mut by_bytes: BTreeSet<(u64, i32)> = bytes.iter().map(|(b, v)| (*v, *b)).collect();
    let place =
        |by_bytes: &mut BTreeSet<(u64, i32)>, bytes: &mut HashMap<i32, u64>, b: i32, delta: i64| {
            let v = bytes[&b];
            by_bytes.remove(&(v, b));
            let nv = v.saturating_add_signed(delta);
            bytes.insert(b, nv);
            by_bytes.insert((nv, b));
        };
    // Drain removed brokers: each replica to the valid target with the
    // fewest bytes.
    for i in 0..replicas.len() {
        for slot in 0..replicas[i].len() {
            if !ctx.removed.contains(&replicas[i][slot]) {
                continue;
            }
            let keep = must_keep_rack(ctx, &replicas[i], slot);
            let r = &replicas[i];
            let pick = |unused: bool| {
                by_bytes
                    .iter()
                    .find(|(_, b)| allowed(ctx, r, slot, *b, unused))
                    .map(|(_, b)| *b)
            };
            let chosen = if ctx.racks {
                pick(true).or_else(|| if keep { None } else { pick(false) })
            } else {
                pick(false)
            }
            .or_else(|| pick(false));
            if let Some(b) = chosen {
                replicas[i][slot] = b;
                place(&mut by_bytes, &mut bytes, b, sizes[i] as i64);
                on.entry(b).or_default().push(i);
            }
        }
    }
    // Each broker above mean + tolerance, fullest first, sheds its largest
    // replicas that do not take it below mean − tolerance, each to the
    // emptiest broker allowed that stays within mean + tolerance.
    let (low_mark, high_mark) = (mean.saturating_sub(tolerance), mean + tolerance);
    let mut over: Vec<(u64, i32)> = bytes
        .iter()
        .filter(|(_, v)| **v > high_mark)
        .map(|(b, v)| (*v, *b))
        .collect();
    over.sort_unstable_by(|a, b| b.cmp(a));
    for (_, x) in over {
        let mut mine: Vec<usize> = on.get(&x).cloned().unwrap_or_default();
        mine.sort_by_key(|&i| (std::cmp::Reverse(sizes[i]), i));
        for i in mine {
            let bx = bytes[&x];
            if bx <= high_mark {
                break;
            }
            let s = sizes[i];
            if s == 0 || bx - s < low_mark {
                continue;
            }
            let Some(slot) = replicas[i].iter().position(|b| *b == x) else {
                continue;
            };
            let keep = must_keep_rack(ctx, &replicas[i], slot);
            let Some(&(by, y)) = by_bytes
                .iter()
                .find(|(_, b)| *b != x && allowed(ctx, &replicas[i], slot, *b, keep))
            else {
                continue;
            };
            if by + s > high_mark {
                continue;
            }
            replicas[i][slot] = y;
            place(&mut by_bytes, &mut bytes, x, -(s as i64));
            place(&mut by_bytes, &mut bytes, y, s as i64);
            on.entry(y).or_default().push(i);
        }
    }
    // Then each broker below mean − tolerance, emptiest first, takes from
    // the fullest brokers, one replica per donor per round (the largest
    // that keeps the donor at or above the mean and itself within mean +
    // tolerance), until it reaches mean − tolerance or nothing fits.
    let mut sorted: HashMap<i32, Vec<usize>> = on
        .iter()
        .map(|(b, v)| {
            let mut v = v.clone();
            v.sort_by_key(|&i| (std::cmp::Reverse(sizes[i]), i));
            (*b, v)
        })
        .collect();
    let mut under: Vec<(u64, i32)> = bytes
        .iter()
        .filter(|(_, v)| **v < low_mark)
        .map(|(b, v)| (*v, *b))
        .collect();
    under.sort_unstable();
    for (_, y) in under {
        loop {
            let mut took = false;
            let donors: Vec<i32> = by_bytes
                .iter()
                .rev()
                .take_while(|(v, _)| *v > mean)
                .map(|(_, b)| *b)
                .collect();
            for x in donors {
                if bytes[&y] >= low_mark {
                    break;
                }
                let room_y = high_mark.saturating_sub(bytes[&y]);
                let spare_x = bytes[&x].saturating_sub(mean);
                let list = sorted.get(&x).map_or(&[][..], Vec::as_slice);
                let pick = list.iter().copied().find(|&i| {
                    let s = sizes[i];
                    s > 0
                        && s <= room_y
                        && s <= spare_x
                        && replicas[i]
                            .iter()
                            .position(|b| *b == x)
                            .is_some_and(|slot| {
                                allowed(
                                    ctx,
                                    &replicas[i],
                                    slot,
                                    y,
                                    must_keep_rack(ctx, &replicas[i], slot),
                                )
                            })
                });
                let Some(i) = pick else {
                    continue;
                };
                let slot = replicas[i].iter().position(|b| *b == x).unwrap_or(0);
                let s = sizes[i];
                replicas[i][slot] = y;
                place(&mut by_bytes, &mut bytes, x, -(s as i64));
                place(&mut by_bytes, &mut bytes, y, s as i64);
                if let Some(v) = sorted.get_mut(&x) {
                    v.retain(|&j| j != i);
                }
                took = true;
            }
            if !took || bytes[&y] >= low_mark {
                break;
            }
        }
    }
    lower_bound
}
