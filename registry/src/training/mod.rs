//! Continuous training: `gate` decides whether a retrained model replaces the
//! one serving (pure functions over predictions, so that the decision can be
//! recomputed from what is stored with a run); `runs` keeps the rounds, their
//! leases, their judgement and their release.

pub mod gate;
pub mod runs;

pub use runs::{
    Evaluation, FieldRow, Lease, Lineage, Release, Run, RunData, RunState, TrainCall, TrainPolicy,
    TrainReply, Transition,
};
