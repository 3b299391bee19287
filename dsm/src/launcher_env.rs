//! A node's rank and the cluster's size, read from the environment that a cluster launcher
//! gives every process it starts: Open MPI's `mpirun` (`OMPI_COMM_WORLD_RANK`,
//! `OMPI_COMM_WORLD_SIZE`), MPICH / Hydra and other PMI launchers (`PMI_RANK`, `PMI_SIZE`) and
//! Slurm's `srun` (`SLURM_PROCID`, `SLURM_NTASKS`, and the step's hosts in
//! `SLURM_STEP_NODELIST`, a [`crate::hostlist`]). No MPI library is involved: only these
//! variables are read. The first launcher whose rank variable is set is the one used; a rank or
//! size that is missing, not a number, or out of range is an error naming the variable.
//!
//! ```
//! use memlink_dsm::launcher_env::{Launcher, LaunchEnv};
//! let env = [("SLURM_PROCID", "2"), ("SLURM_NTASKS", "3"), ("SLURM_STEP_NODELIST", "n[1-3]")];
//! let found = LaunchEnv::from_vars(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
//!     .unwrap();
//! assert_eq!((found.launcher, found.rank, found.size), (Launcher::Slurm, 2, 3));
//! assert_eq!(found.hosts.unwrap()[0], "n1");
//! ```

use std::fmt;

use crate::hostlist;
use crate::types::NodeId;

/// Which launcher started this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// Open MPI's mpirun / mpiexec.
    OpenMpi,
    /// A PMI launcher (MPICH's Hydra mpiexec, Intel MPI, ...).
    Pmi,
    /// Slurm's srun.
    Slurm,
}

impl fmt::Display for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Launcher::OpenMpi => "Open MPI",
            Launcher::Pmi => "PMI",
            Launcher::Slurm => "Slurm",
        })
    }
}

/// The variables of each launcher: (launcher, rank, size, host list).
const SOURCES: [(Launcher, &str, &str, Option<&str>); 3] = [
    (
        Launcher::OpenMpi,
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        None,
    ),
    (Launcher::Pmi, "PMI_RANK", "PMI_SIZE", None),
    (
        Launcher::Slurm,
        "SLURM_PROCID",
        "SLURM_NTASKS",
        Some("SLURM_STEP_NODELIST"),
    ),
];

/// What the launcher told this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchEnv {
    /// The launcher whose variables were found.
    pub launcher: Launcher,
    /// This process's rank: its node id.
    pub rank: NodeId,
    /// The number of processes: the cluster's node count.
    pub size: usize,
    /// The hosts of the job, in order, when the launcher says them (Slurm).
    pub hosts: Option<Vec<String>>,
}

/// Why the launcher's environment could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaunchEnvError {
    /// No launcher's rank variable is set.
    NoLauncher,
    /// A variable is missing or does not hold a valid value.
    Bad {
        /// The variable.
        var: &'static str,
        /// Its value, if it is set.
        value: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The host list does not expand.
    Hosts(hostlist::HostlistError),
}

impl fmt::Display for LaunchEnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchEnvError::NoLauncher => write!(
                f,
                "no launcher's rank in the environment (OMPI_COMM_WORLD_RANK, PMI_RANK or \
                 SLURM_PROCID): start the nodes with mpirun or srun, or give --id and --peers"
            ),
            LaunchEnvError::Bad { var, value, reason } => match value {
                Some(v) => write!(f, "{var}={v:?}: {reason}"),
                None => write!(f, "{var} is not set: {reason}"),
            },
            LaunchEnvError::Hosts(e) => write!(f, "SLURM_STEP_NODELIST: {e}"),
        }
    }
}

impl std::error::Error for LaunchEnvError {}

impl LaunchEnv {
    /// Reads this process's environment.
    pub fn from_process() -> Result<LaunchEnv, LaunchEnvError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `var` (a lookup by name), for tests and embedding.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<LaunchEnv, LaunchEnvError> {
        let (launcher, rank_var, size_var, hosts_var) = SOURCES
            .into_iter()
            .find(|(_, rank, _, _)| var(rank).is_some())
            .ok_or(LaunchEnvError::NoLauncher)?;
        let number = |name: &'static str, why: &str| -> Result<u64, LaunchEnvError> {
            let value = var(name);
            match value.as_deref().map(str::trim).map(str::parse::<u64>) {
                Some(Ok(n)) => Ok(n),
                _ => Err(LaunchEnvError::Bad {
                    var: name,
                    value,
                    reason: why.to_string(),
                }),
            }
        };
        let size = number(
            size_var,
            "the number of processes is needed, a positive integer",
        )?;
        let max = NodeId::MAX as u64 + 1;
        if size == 0 || size > max {
            return Err(LaunchEnvError::Bad {
                var: size_var,
                value: var(size_var),
                reason: format!("a cluster has 1 to {max} nodes"),
            });
        }
        let rank = number(rank_var, "a rank is a non-negative integer")?;
        if rank >= size {
            return Err(LaunchEnvError::Bad {
                var: rank_var,
                value: var(rank_var),
                reason: format!("not a rank of {size} processes ({size_var})"),
            });
        }
        let hosts = match hosts_var.and_then(&var) {
            Some(list) => Some(hostlist::expand(&list).map_err(LaunchEnvError::Hosts)?),
            None => None,
        };
        Ok(LaunchEnv {
            launcher,
            rank: rank as NodeId,
            size: size as usize,
            hosts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<LaunchEnv, LaunchEnvError> {
        LaunchEnv::from_vars(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn each_launcher_is_read() {
        let e = read(&[("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "3")]).unwrap();
        assert_eq!(
            (e.launcher, e.rank, e.size, e.hosts),
            (Launcher::OpenMpi, 1, 3, None)
        );
        let e = read(&[("PMI_RANK", "0"), ("PMI_SIZE", "2")]).unwrap();
        assert_eq!((e.launcher, e.rank, e.size), (Launcher::Pmi, 0, 2));
        let e = read(&[
            ("SLURM_PROCID", "4"),
            ("SLURM_NTASKS", "6"),
            ("SLURM_STEP_NODELIST", "node[01-03,7],gpu5"),
        ])
        .unwrap();
        assert_eq!((e.launcher, e.rank, e.size), (Launcher::Slurm, 4, 6));
        assert_eq!(
            e.hosts.unwrap(),
            ["node01", "node02", "node03", "node7", "gpu5"]
        );
    }

    #[test]
    fn open_mpi_wins_over_a_surrounding_slurm_allocation() {
        // mpirun inside an salloc: the Slurm variables are the allocation's, not the ranks'.
        let e = read(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_SIZE", "3"),
        ])
        .unwrap();
        assert_eq!((e.launcher, e.rank, e.size), (Launcher::OpenMpi, 2, 3));
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(read(&[]), Err(LaunchEnvError::NoLauncher));
        for (vars, var, why) in [
            (&[("PMI_RANK", "0")][..], "PMI_SIZE", "not set"),
            (&[("PMI_RANK", "x"), ("PMI_SIZE", "2")][..], "PMI_RANK", "x"),
            (
                &[("PMI_RANK", "2"), ("PMI_SIZE", "2")][..],
                "PMI_RANK",
                "not a rank",
            ),
            (
                &[("PMI_RANK", "0"), ("PMI_SIZE", "0")][..],
                "PMI_SIZE",
                "1 to",
            ),
            (
                &[("PMI_RANK", "0"), ("PMI_SIZE", "70000")][..],
                "PMI_SIZE",
                "1 to",
            ),
            (
                &[("PMI_RANK", "-1"), ("PMI_SIZE", "2")][..],
                "PMI_RANK",
                "-1",
            ),
        ] {
            let e = read(vars).unwrap_err().to_string();
            assert!(e.contains(var) && e.contains(why), "{vars:?}: {e}");
        }
        let e = read(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
            ("SLURM_STEP_NODELIST", "n[1-"),
        ])
        .unwrap_err();
        assert!(matches!(e, LaunchEnvError::Hosts(_)), "{e}");
    }
}
