//! What a run collected: the machine, the options, the servers and their
//! samples; what the report is made of.

use std::time::Duration;

use serde::Serialize;

use super::options::Options;
use super::sample::{Generator, Placement, Sample};
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

    /// The (placement, generator) pairs with load figures, in report order.
    pub(crate) fn load_scopes(&self) -> Vec<(Placement, Generator)> {
        let o = &self.options;
        o.placements
            .iter()
            .flat_map(|p| o.generators.iter().map(move |g| (*p, *g)))
            .filter(|(p, g)| {
                self.samples
                    .iter()
                    .any(|s| s.group.placement == Some(*p) && s.group.generator == Some(*g))
            })
            .collect()
    }

    /// The cluster_thread servers measured, plaintext (`tls` false) or TLS.
    pub(crate) fn cluster_thread_ids_of(&self, tls: bool) -> Vec<&'static str> {
        self.servers
            .iter()
            .filter(|s| s.is_cluster_thread() && s.tls == tls)
            .map(|s| s.id)
            .collect()
    }

    /// The plaintext cluster_thread servers measured (every scenario's).
    pub(crate) fn cluster_thread_ids(&self) -> Vec<&'static str> {
        self.cluster_thread_ids_of(false)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::super::options::Options;
    use super::super::sample::{Generator, Group, Metric, Placement, Sample, Scenario};
    use super::{Machine, Run};

    /// A run of three servers, pinned, one generator, two repetitions, with
    /// made-up figures: what the verdicts must make of them.
    pub(crate) fn example() -> Run {
        let args = [
            "--pin",
            "--generators",
            "wrk",
            "--servers",
            "ct-rr,ct-reuseport,hyper-tpc",
        ];
        let options = Options::parse(lexopt::Parser::from_args(args)).unwrap();
        let mut samples = Vec::new();
        for rep in 0..2 {
            for (scenario, figures) in [
                // (server, CPU µs/req, p99 ms)
                (
                    Scenario::KeepAlive,
                    [
                        ("ct-rr", 10.0, 1.0),
                        ("ct-reuseport", 9.9, 2.0),
                        ("hyper-tpc", 10.0, 1.5),
                    ],
                ),
                (
                    Scenario::Churn,
                    [
                        ("ct-rr", 60.0, 3.0),
                        ("ct-reuseport", 50.0, 3.0),
                        ("hyper-tpc", 45.0, 4.0),
                    ],
                ),
            ] {
                for (server, cpu, p99) in figures {
                    samples.push(Sample {
                        group: Group::load(scenario, Placement::Pinned, Generator::Wrk, 1),
                        server,
                        rep,
                        metrics: BTreeMap::from([
                            (Metric::CpuUsPerReq, cpu + rep as f64 * 0.01),
                            (Metric::P99Ms, p99),
                            (Metric::Rps, 1e6 / cpu),
                        ]),
                        attempts_ms: Vec::new(),
                    });
                }
            }
        }
        Run {
            servers: options.servers.clone(),
            options,
            started: "now".into(),
            machine: Machine {
                cpu: "test".into(),
                cores: 2,
                memory_bytes: 1 << 30,
                kernel: "6".into(),
            },
            notices: Vec::new(),
            samples,
            elapsed: Duration::from_secs(1),
        }
    }
}
