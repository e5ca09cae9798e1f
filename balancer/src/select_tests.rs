use super::*;

fn idle(weights: &[u32]) -> impl Fn(usize) -> Option<Load> + '_ {
    |i| {
        Some(Load {
            in_flight: 0,
            weight: weights[i],
        })
    }
}

fn picks(
    algorithm: Algorithm,
    weights: &[u32],
    n: usize,
    load: impl Fn(usize) -> Option<Load>,
) -> Vec<usize> {
    let order = rotation(weights);
    (0..n)
        .map(|cursor| select(algorithm, &order, weights.len(), cursor, &load).unwrap())
        .collect()
}

#[test]
fn rotation_is_smooth_and_reduced() {
    assert_eq!(rotation(&[1, 1, 1]), [0, 1, 2]);
    assert_eq!(rotation(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
    assert_eq!(rotation(&[2, 4]), [1, 0, 1]);
    assert_eq!(rotation(&[1000]), [0]);
    assert!(rotation(&[]).is_empty());
}

#[test]
fn round_robin_order_is_weighted() {
    let weights = [1, 3];
    assert_eq!(
        picks(Algorithm::RoundRobin, &weights, 8, idle(&weights)),
        [1, 0, 1, 1, 1, 0, 1, 1]
    );
}

#[test]
fn round_robin_skips_refused_nodes() {
    let weights = [1, 1, 1];
    let load = |i| {
        (i != 1).then_some(Load {
            in_flight: 0,
            weight: 1,
        })
    };
    assert_eq!(
        picks(Algorithm::RoundRobin, &weights, 6, load),
        [0, 2, 2, 0, 2, 2]
    );
}

#[test]
fn least_outstanding_spreads_ties_in_turn() {
    let weights = [1, 1, 1];
    assert_eq!(
        picks(Algorithm::LeastOutstanding, &weights, 6, idle(&weights)),
        [0, 1, 2, 0, 1, 2]
    );
}

#[test]
fn least_outstanding_honours_weight_when_idle() {
    let weights = [1, 3];
    assert_eq!(
        picks(Algorithm::LeastOutstanding, &weights, 4, idle(&weights)),
        [1, 0, 1, 1]
    );
}

#[test]
fn least_outstanding_prefers_lowest_load_per_weight() {
    let weights = [1, 1, 2];
    let in_flight = [3u64, 1, 3];
    let load = |i: usize| {
        Some(Load {
            in_flight: in_flight[i],
            weight: weights[i],
        })
    };
    // node 1: 1/1, node 2: 3/2 = 1.5, node 0: 3
    assert_eq!(
        picks(Algorithm::LeastOutstanding, &weights, 4, load),
        [1; 4]
    );
    // with node 1 excluded (already tried), node 2 wins
    let load = |i: usize| {
        (i != 1).then_some(Load {
            in_flight: in_flight[i],
            weight: weights[i],
        })
    };
    assert_eq!(
        picks(Algorithm::LeastOutstanding, &weights, 3, load),
        [2; 3]
    );
}

#[test]
fn least_outstanding_breaks_weighted_ties_by_rotation() {
    // 2/2 on node 1 ties 1/1 on node 0; node 2 is busier
    let weights = [1, 2, 1];
    let in_flight = [1u64, 2, 5];
    let load = |i: usize| {
        Some(Load {
            in_flight: in_flight[i],
            weight: weights[i],
        })
    };
    // rotation of [1,2,1] is [1, 0, 2, 1]
    assert_eq!(
        picks(Algorithm::LeastOutstanding, &weights, 4, load),
        [1, 0, 1, 1]
    );
}

#[test]
fn nothing_acceptable_gives_none() {
    for algorithm in [Algorithm::RoundRobin, Algorithm::LeastOutstanding] {
        assert_eq!(select(algorithm, &[0, 1], 2, 0, |_| None), None);
        assert_eq!(
            select(algorithm, &[], 0, 0, |_| Some(Load {
                in_flight: 0,
                weight: 1
            })),
            None
        );
    }
}
