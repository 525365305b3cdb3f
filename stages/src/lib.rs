//! Every slayer stage kind beyond the engine's built-ins: data preparation, layer
//! surgery, importance, training, evaluation and reports, on the model core of
//! `slayer-model` (re-exported here as [`model`], with its [`rng`]). [`registry`] is what
//! the `slayer` binary runs with.

pub mod alloc;
pub mod data;
pub mod device_facts;
pub mod eval;
pub mod importance;
pub mod model_card;
pub mod model_commands;
pub mod model_kinds;
pub mod report;
pub mod surgery;
pub mod train;

pub use slayer_model as model;
pub use slayer_model::rng;

use slayer_engine::Registry;

/// The engine's built-in kinds plus every kind of this crate.
pub fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.set_device_facts(device_facts::device_facts);
    model_kinds::register(&mut r);
    data::register(&mut r);
    surgery::register(&mut r);
    importance::register(&mut r);
    train::register(&mut r);
    eval::register(&mut r);
    report::register(&mut r);
    r
}
