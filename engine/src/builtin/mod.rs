//! Stage kinds built into the engine: `files` (declare raw inputs as one artifact) and
//! `command` (run an external tool).

mod command;
mod files;

pub use command::{Command, CommandParams};
pub use files::{Files, FilesParams};

use crate::stage::Registry;

pub fn register(r: &mut Registry) {
    r.add_typed(Files);
    r.add_typed(Command);
}
