//! What a run collected: the machine, the options, the servers and their
//! samples; what the report is made of.

use std::time::Duration;

use serde::Serialize;

use super::options::Options;
use super::sample::{Generator, Sample};
use super::servers::Server;

/// The machine the run was on.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) cores: usize,
    pub(crate) memory_bytes: u64,
    pub(crate) kernel: String,
}

/// What the report is made of.
pub(crate) struct Run {
    pub(crate) options: Options,
    pub(crate) started: String,
    pub(crate) machine: Machine,
    pub(crate) notices: Vec<String>,
    /// Servers that were measured (built and selected), in table order.
    pub(crate) servers: Vec<&'static Server>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) elapsed: Duration,
}

impl Run {
    /// How each generator that ran was driven, for the report's header.
    pub(crate) fn generators(&self) -> String {
        let o = &self.options;
        let threads = o.generator_threads;
        o.generators
            .iter()
            .map(|g| match g {
                Generator::Builtin => format!(
                    "built-in (tokio, {threads} thread{}, {} connections)",
                    if threads == 1 { "" } else { "s" },
                    o.connections
                ),
                Generator::Wrk => format!("wrk -t{threads} -c{}", o.connections),
            })
            .collect::<Vec<_>>()
            .join(" and ")
    }
}
