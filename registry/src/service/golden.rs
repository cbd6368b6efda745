//! Golden runs of published kits, scheduled fairly between teams: at most
//! `golden_slots` at once in all and `golden_team_slots` for one team; a freed
//! slot goes to the team served longest ago (round robin between teams, first
//! come first served within one), so one team's stream of publishes cannot
//! keep another's waiting. A publish that waits past `golden_wait` is told
//! how many runs are ahead of it and why.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{RegistryError, Result};

#[derive(Debug, Default)]
struct State {
    running: usize,
    per_team: HashMap<String, usize>,
    /// Tickets waiting, per team, oldest first.
    waiting: HashMap<String, VecDeque<u64>>,
    /// When each team was last given a slot (a grant count).
    last_served: HashMap<String, u64>,
    granted: std::collections::HashSet<u64>,
    next_ticket: u64,
    grants: u64,
    slots: usize,
    team_slots: usize,
}

impl State {
    /// Gives free slots to waiting teams, the one served longest ago first.
    fn dispatch(&mut self) {
        while self.running < self.slots.max(1) {
            let next = self
                .waiting
                .iter()
                .filter(|(t, q)| {
                    !q.is_empty()
                        && self.per_team.get(*t).copied().unwrap_or(0) < self.team_slots.max(1)
                })
                .min_by_key(|(t, q)| (self.last_served.get(*t).copied(), q.front().copied()))
                .map(|(t, _)| t.clone());
            let Some(team) = next else { return };
            let Some(ticket) = self.waiting.get_mut(&team).and_then(VecDeque::pop_front) else {
                return;
            };
            self.grants += 1;
            self.last_served.insert(team.clone(), self.grants);
            *self.per_team.entry(team).or_default() += 1;
            self.running += 1;
            self.granted.insert(ticket);
        }
    }

    fn forget(&mut self, team: &str, ticket: u64) {
        if let Some(q) = self.waiting.get_mut(team) {
            q.retain(|t| *t != ticket);
            if q.is_empty() {
                self.waiting.remove(team);
            }
        }
    }
}

/// The queue of golden runs.
#[derive(Debug, Default)]
pub(crate) struct GoldenQueue {
    state: Mutex<State>,
    cv: Condvar,
}

/// A slot held; dropping it frees it for the next team.
#[derive(Debug)]
pub(crate) struct GoldenTurn<'a> {
    queue: &'a GoldenQueue,
    team: String,
}

impl Drop for GoldenTurn<'_> {
    fn drop(&mut self) {
        let mut st = self.queue.lock();
        st.running = st.running.saturating_sub(1);
        if let Some(n) = st.per_team.get_mut(&self.team) {
            *n = n.saturating_sub(1);
        }
        st.dispatch();
        self.queue.cv.notify_all();
    }
}

impl GoldenQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (at most `wait`, or until `cancelled` says so) for a slot for a
    /// run of `team`'s kit.
    pub(crate) fn take(
        &self,
        team: &str,
        slots: usize,
        team_slots: usize,
        wait: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<GoldenTurn<'_>> {
        let started = Instant::now();
        let mut st = self.lock();
        st.slots = slots.max(1);
        st.team_slots = team_slots.clamp(1, st.slots);
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.waiting
            .entry(team.to_owned())
            .or_default()
            .push_back(ticket);
        st.dispatch();
        loop {
            if st.granted.remove(&ticket) {
                let waited = started.elapsed();
                if waited > Duration::from_secs(1) {
                    tracing::info!(
                        team,
                        waited_s = waited.as_secs_f64(),
                        "golden run waited for its slot"
                    );
                }
                return Ok(GoldenTurn {
                    queue: self,
                    team: team.to_owned(),
                });
            }
            let waited = started.elapsed();
            if cancelled() {
                st.forget(team, ticket);
                return Err(RegistryError::Cancelled("the caller went away".into()));
            }
            if waited >= wait {
                st.forget(team, ticket);
                let mine = st.per_team.get(team).copied().unwrap_or(0);
                let ahead: usize = st.waiting.values().map(VecDeque::len).sum();
                return Err(RegistryError::Unavailable(format!(
                    "waited {:.0} s for a golden run: the registry checks {} kit(s) at once, {} of them now ({mine} of team `{team}`, which may have {} at once), and {ahead} more wait; try again shortly",
                    waited.as_secs_f64(),
                    st.slots,
                    st.running,
                    st.team_slots
                )));
            }
            let step = (wait - waited).min(Duration::from_millis(200));
            st = self
                .cv
                .wait_timeout(st, step)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_slot_goes_to_the_team_served_longest_ago() {
        let q = std::sync::Arc::new(GoldenQueue::default());
        let never = || false;
        // Team a holds the one slot and has three more waiting.
        let first = q.take("a", 1, 1, Duration::from_secs(5), &never).unwrap();
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let spawn = |team: &'static str| {
            let (q, order) = (q.clone(), order.clone());
            std::thread::spawn(move || {
                let t = q
                    .take(team, 1, 1, Duration::from_secs(10), &|| false)
                    .unwrap();
                order.lock().unwrap().push(team);
                std::thread::sleep(Duration::from_millis(30));
                drop(t);
            })
        };
        let mut handles = Vec::new();
        for _ in 0..3 {
            handles.push(spawn("a"));
            std::thread::sleep(Duration::from_millis(20));
        }
        // b comes last, yet is served next: a was served most recently.
        handles.push(spawn("b"));
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(order.lock().unwrap()[0], "b", "{:?}", order.lock().unwrap());
    }

    #[test]
    fn a_wait_past_its_bound_names_what_is_ahead() {
        let q = GoldenQueue::default();
        let _held = q
            .take("a", 1, 1, Duration::from_secs(1), &|| false)
            .unwrap();
        let e = q
            .take("a", 1, 1, Duration::from_millis(100), &|| false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 of team `a`, which may have 1 at once"), "{e}");
    }
}
