//! Continuous training: `gate` decides whether a retrained model replaces the
//! one serving (pure functions over predictions, so that the decision can be
//! recomputed from what is stored with a run); `runs` holds the rounds' records
//! and the calls on them, `rounds` their life (policies, claims, leases, the
//! tick), `judge` their data, judgement and release, `triggers` what starts a
//! round by itself.

pub mod auc;
pub mod gate;
mod judge;
mod rounds;
pub mod runs;
mod triggers;

pub use runs::{
    Aliases, Evaluation, FieldRow, Lease, Lineage, Release, Run, RunData, RunState, TrainCall,
    TrainPolicy, TrainReply, Transition,
};
