//! Continuous training: what decides whether a retrained model replaces the
//! one serving. Pure functions over predictions, so that the decision can be
//! recomputed from what is stored with a run.

pub mod gate;
