//! Which cluster a command talks to: `--socket`, else the sockets of the
//! control directory, narrowed by `--pid` and `--name`.

use std::path::{Path, PathBuf};

use cluster_ctl::client;

/// A cluster's control socket, and its pid when its name tells.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) path: PathBuf,
    pub(crate) name: Option<String>,
    pub(crate) pid: Option<u32>,
}

/// Every cluster the options pick (at least one).
pub(crate) fn select(
    socket: Option<&Path>,
    pid: Option<u32>,
    name: Option<&str>,
) -> Result<Vec<Target>, String> {
    if let Some(path) = socket {
        let parsed = path
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(cluster_ctl::parse_socket_name);
        return Ok(vec![Target {
            path: path.to_owned(),
            name: parsed.as_ref().map(|(n, _)| n.clone()),
            pid: parsed.map(|(_, p)| p),
        }]);
    }
    let dir = cluster_ctl::control_dir().ok_or_else(|| {
        format!(
            "{}=off: there is no control directory to look in (give --socket PATH)",
            cluster_ctl::CONTROL_ENV
        )
    })?;
    let all = client::targets(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let picked: Vec<Target> = all
        .into_iter()
        .filter(|t| pid.is_none_or(|p| p == t.pid) && name.is_none_or(|n| n == t.name))
        .map(|t| Target {
            path: t.path,
            name: Some(t.name),
            pid: Some(t.pid),
        })
        .collect();
    if picked.is_empty() {
        let which = match (pid, name) {
            (Some(p), _) => format!(" with pid {p}"),
            (None, Some(n)) => format!(" named {n:?}"),
            (None, None) => String::new(),
        };
        return Err(format!(
            "no running cluster{which} of this user in {}",
            dir.display()
        ));
    }
    Ok(picked)
}

/// The one cluster picked; with several, an error that lists them.
pub(crate) fn one(mut targets: Vec<Target>) -> Result<Target, String> {
    if targets.len() == 1 {
        return Ok(targets.remove(0));
    }
    let list: Vec<String> = targets
        .iter()
        .map(|t| {
            format!(
                "  {} (pid {})",
                t.name.as_deref().unwrap_or("?"),
                t.pid.map_or_else(|| "?".into(), |p| p.to_string())
            )
        })
        .collect();
    Err(format!(
        "{} clusters are running; choose one with --pid or --name:\n{}",
        targets.len(),
        list.join("\n")
    ))
}
