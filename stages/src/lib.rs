//! Every slayer stage kind beyond the engine's built-ins: the Llama model core and its
//! formats, data preparation, layer surgery, importance, training and evaluation.
//! [`registry`] is what the `slayer` binary runs with.

pub mod cli;
pub mod model;
pub mod model_kinds;
pub mod report;

use slayer_engine::Registry;

/// The engine's built-in kinds plus every kind of this crate.
pub fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    model_kinds::register(&mut r);
    report::register(&mut r);
    r
}
