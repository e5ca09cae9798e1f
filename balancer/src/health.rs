//! The rise/fall state machine that decides whether a node is up, apart from any I/O.
//!
//! [`probe`](crate::probe) feeds it active check results and [`proxy`](crate::proxy) feeds it
//! refused connections; both only log when [`RiseFall::observe`] reports a [`Flip`].

/// A change of a node's state, the only health event worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    Down,
    Up,
}

/// Consecutive-result counter with hysteresis: `fall` failures in a row take an up node
/// down, `rise` successes in a row bring a down node back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiseFall {
    up: bool,
    /// Results in a row that disagree with the current state.
    streak: u32,
    consecutive_failures: u32,
}

impl Default for RiseFall {
    /// A node nobody has checked yet counts as up, so a fresh balancer serves at once; the
    /// first check runs immediately and a dead node is refused on its first connect anyway.
    fn default() -> Self {
        Self {
            up: true,
            streak: 0,
            consecutive_failures: 0,
        }
    }
}

impl RiseFall {
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Failed checks or refused connections since the last good check.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Counts one check result. `rise` and `fall` are passed per call because a reload may
    /// change them while the counts carry on.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<Flip> {
        if ok {
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        }
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { fall } else { rise };
        if self.streak < needed.max(1) {
            return None;
        }
        self.up = ok;
        self.streak = 0;
        Some(if ok { Flip::Up } else { Flip::Down })
    }

    /// A refused or reset connection is proof enough: down at once, and back only after
    /// `rise` good checks.
    pub fn force_down(&mut self) -> Option<Flip> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.streak = 0;
        if !self.up {
            return None;
        }
        self.up = false;
        Some(Flip::Down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rf: &mut RiseFall, results: &[bool], rise: u32, fall: u32) -> Vec<Option<Flip>> {
        results
            .iter()
            .map(|&ok| rf.observe(ok, rise, fall))
            .collect()
    }

    #[test]
    fn starts_up_and_falls_after_fall_failures() {
        let mut rf = RiseFall::default();
        assert!(rf.is_up());
        let flips = run(&mut rf, &[false, false, false], 2, 3);
        assert_eq!(flips, [None, None, Some(Flip::Down)]);
        assert!(!rf.is_up());
        assert_eq!(rf.consecutive_failures(), 3);
    }

    #[test]
    fn a_success_breaks_a_failure_streak() {
        let mut rf = RiseFall::default();
        let flips = run(&mut rf, &[false, true, false, true, false], 2, 2);
        assert_eq!(flips, [None; 5]);
        assert!(rf.is_up());
        assert_eq!(rf.consecutive_failures(), 1);
    }

    #[test]
    fn rises_after_rise_successes() {
        let mut rf = RiseFall::default();
        assert_eq!(rf.observe(false, 3, 1), Some(Flip::Down));
        let flips = run(&mut rf, &[true, true, false, true, true, true], 3, 1);
        // the failure resets the rise count and is not a flip (already down)
        assert_eq!(flips, [None, None, None, None, None, Some(Flip::Up)]);
        assert!(rf.is_up());
        assert_eq!(rf.consecutive_failures(), 0);
    }

    #[test]
    fn fall_of_one_flips_on_first_failure() {
        let mut rf = RiseFall::default();
        assert_eq!(rf.observe(false, 1, 1), Some(Flip::Down));
        assert_eq!(rf.observe(false, 1, 1), None);
        assert_eq!(rf.observe(true, 1, 1), Some(Flip::Up));
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut rf = RiseFall::default();
        assert_eq!(rf.observe(false, 0, 0), Some(Flip::Down));
        assert_eq!(rf.observe(true, 0, 0), Some(Flip::Up));
    }

    #[test]
    fn force_down_needs_rise_checks_to_return() {
        let mut rf = RiseFall::default();
        rf.observe(true, 2, 2);
        assert_eq!(rf.force_down(), Some(Flip::Down));
        assert_eq!(rf.force_down(), None);
        assert_eq!(rf.consecutive_failures(), 2);
        assert_eq!(run(&mut rf, &[true, true], 2, 2), [None, Some(Flip::Up)]);
    }

    #[test]
    fn force_down_resets_a_partial_rise() {
        let mut rf = RiseFall::default();
        rf.force_down();
        assert_eq!(rf.observe(true, 2, 2), None);
        rf.force_down();
        assert_eq!(run(&mut rf, &[true, true], 2, 2), [None, Some(Flip::Up)]);
    }
}
