//! Choosing a node: the pure [`select`] function (round robin or least-outstanding) and
//! the smooth weighted [`rotation`] it walks, apart from any live state.
//!
//! [`Snapshot::pick`](crate::cluster::Snapshot::pick) feeds it the nodes of a snapshot.

use speedbox_common::config::Algorithm;

/// A candidate node's current load, as [`select`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub in_flight: u64,
    pub weight: u32,
}

impl Load {
    /// `a.in_flight / a.weight` against `b`'s, without division.
    fn cmp_relative(self, other: Load) -> std::cmp::Ordering {
        (self.in_flight * u64::from(other.weight)).cmp(&(other.in_flight * u64::from(self.weight)))
    }
}

/// Picks a node index (pingora's `select_with`): `load(i)` is `None` for a node that may
/// not take this request (down, or already tried by this request).
///
/// Round robin walks `rotation` from `cursor`. Least-outstanding takes the lowest
/// in-flight relative to weight; ties go to the first tied node in `rotation` from
/// `cursor`, so an idle cluster still spreads requests by weight.
pub fn select(
    algorithm: Algorithm,
    rotation: &[usize],
    node_count: usize,
    cursor: usize,
    load: impl Fn(usize) -> Option<Load>,
) -> Option<usize> {
    if rotation.is_empty() {
        return None;
    }
    let start = cursor % rotation.len();
    let in_turn = || (0..rotation.len()).map(move |k| rotation[(start + k) % rotation.len()]);
    match algorithm {
        Algorithm::RoundRobin => in_turn().find(|&i| load(i).is_some()),
        Algorithm::LeastOutstanding => {
            let mut best: Option<(usize, Load)> = None;
            let mut tied = 0;
            for i in 0..node_count {
                let Some(l) = load(i) else { continue };
                match best.map(|(_, b)| l.cmp_relative(b)) {
                    None | Some(std::cmp::Ordering::Less) => {
                        best = Some((i, l));
                        tied = 1;
                    }
                    Some(std::cmp::Ordering::Equal) => tied += 1,
                    Some(std::cmp::Ordering::Greater) => {}
                }
            }
            let (first, best) = best?;
            if tied == 1 {
                return Some(first);
            }
            // Loads move under our feet; if no tied node is found again, the first will do.
            let tie = in_turn().find(|&i| load(i).is_some_and(|l| l.cmp_relative(best).is_eq()));
            Some(tie.unwrap_or(first))
        }
    }
}

/// Smooth weighted round robin (nginx): weights 5,1,1 give `a a b a c a a`, not
/// `a a a a a b c`. Weights are divided by their common divisor first to keep it short.
pub fn rotation(weights: &[u32]) -> Vec<usize> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w / divisor)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        order.push(best);
    }
    order
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
