//! The surgery tests, one test binary: the layout notation and the plans built from it
//! (`layout`), the `expand` and `prune` stage kinds on a tiny random model (`stages`).

#[path = "../block_support/mod.rs"]
mod block_support;
mod layout;
mod stages;
