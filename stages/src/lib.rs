//! Every slayer stage kind beyond the engine's built-ins: the Llama model core and its
//! formats, data preparation, layer surgery, importance, training and evaluation.
//! [`registry`] is what the `slayer` binary runs with.

pub mod alloc;
pub mod cli;
pub mod data;
pub mod eval;
pub mod importance;
pub mod model;
pub mod model_card;
pub mod model_kinds;
pub mod report;
pub mod rng;
pub mod surgery;
pub mod train;

use slayer_engine::Registry;

/// The engine's built-in kinds plus every kind of this crate.
pub fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    r.set_device_facts(model::device::device_facts);
    model_kinds::register(&mut r);
    data::register(&mut r);
    surgery::register(&mut r);
    importance::register(&mut r);
    train::register(&mut r);
    eval::register(&mut r);
    report::register(&mut r);
    r
}
