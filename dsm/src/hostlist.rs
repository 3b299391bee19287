//! Slurm host lists: `node[01-03,7],gpu5` is `node01, node02, node03, node7, gpu5`.
//!
//! The syntax Slurm uses in `SLURM_STEP_NODELIST` / `SLURM_JOB_NODELIST`: hosts separated by
//! commas; a bracket group `[a-b,c,...]` in a host stands for each number of its ranges and
//! single numbers, in order, zero-padded to the width of the range's lower bound when that bound
//! has leading zeros (`[08-10]` is `08, 09, 10`); several groups in one host give every
//! combination, the leftmost group varying slowest (`r[1-2]n[1-2]` is `r1n1, r1n2, r2n1, r2n2`).
//! The list comes from the environment, so it is checked, not trusted: unbalanced brackets,
//! descending or non-numeric ranges and lists of more than [`MAX_HOSTS`] hosts are refused.
//!
//! ```
//! use memlink_dsm::hostlist::expand;
//! assert_eq!(expand("node[01-03,7],gpu5").unwrap(),
//!            ["node01", "node02", "node03", "node7", "gpu5"]);
//! ```

use std::fmt;

/// The most hosts one list may expand to.
pub const MAX_HOSTS: usize = 65_536;

/// Why a host list could not be expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostlistError {
    /// The list as given.
    pub list: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for HostlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad host list {:?}: {}", self.list, self.reason)
    }
}

impl std::error::Error for HostlistError {}

/// Expands a Slurm host list into its host names, in order (duplicates kept).
pub fn expand(list: &str) -> Result<Vec<String>, HostlistError> {
    let fail = |reason: String| HostlistError {
        list: list.to_string(),
        reason,
    };
    let mut hosts = Vec::new();
    for item in split_top_level(list).map_err(fail)? {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        expand_host(item, &mut hosts).map_err(fail)?;
    }
    if hosts.is_empty() {
        return Err(fail("it names no host".into()));
    }
    Ok(hosts)
}

/// Splits at the commas outside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in list.char_indices() {
        match c {
            '[' if depth == 0 => depth = 1,
            '[' => return Err(format!("nested '[' at byte {i}")),
            ']' if depth == 1 => depth = 0,
            ']' => return Err(format!("']' without '[' at byte {i}")),
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("a '[' is not closed".into());
    }
    items.push(&list[start..]);
    Ok(items)
}

/// One piece of a host pattern: literal text, or the numbers of a bracket group.
enum Piece<'a> {
    Text(&'a str),
    Numbers(Vec<String>),
}

/// Appends every host of one pattern (no top-level commas) to `hosts`.
fn expand_host(pattern: &str, hosts: &mut Vec<String>) -> Result<(), String> {
    let mut pieces = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('[') {
        pieces.push(Piece::Text(&rest[..open]));
        let close = rest[open..]
            .find(']')
            .map(|c| open + c)
            .ok_or_else(|| format!("a '[' in {pattern:?} is not closed"))?;
        pieces.push(Piece::Numbers(expand_ranges(&rest[open + 1..close])?));
        rest = &rest[close + 1..];
    }
    pieces.push(Piece::Text(rest));
    let count = pieces.iter().try_fold(1usize, |n, p| match p {
        Piece::Text(_) => Some(n),
        Piece::Numbers(v) => n.checked_mul(v.len()),
    });
    match count {
        Some(n) if n.saturating_add(hosts.len()) <= MAX_HOSTS => {}
        _ => return Err(format!("it expands to more than {MAX_HOSTS} hosts")),
    }
    let mut names = vec![String::new()];
    for piece in &pieces {
        names = match piece {
            Piece::Text(t) => names.into_iter().map(|n| n + t).collect(),
            Piece::Numbers(nums) => names
                .iter()
                .flat_map(|n| nums.iter().map(move |x| format!("{n}{x}")))
                .collect(),
        };
    }
    hosts.extend(names);
    Ok(())
}

/// The numbers of one bracket group's body: `01-03,7` is `01, 02, 03, 7`.
fn expand_ranges(body: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in body.split(',') {
        let part = part.trim();
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let number = |s: &str| -> Result<u64, String> {
            if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{part:?} in [{body}] is not a number or a range a-b"
                ));
            }
            s.parse().map_err(|_| format!("{s:?} is not a number"))
        };
        let (a, b) = (number(lo)?, number(hi)?);
        if a > b {
            return Err(format!("the range {part:?} in [{body}] runs backwards"));
        }
        if (b - a) as usize >= MAX_HOSTS || out.len() + (b - a) as usize >= MAX_HOSTS {
            return Err(format!("it expands to more than {MAX_HOSTS} hosts"));
        }
        let width = if lo.len() > 1 && lo.starts_with('0') {
            lo.len()
        } else {
            0
        };
        out.extend((a..=b).map(|n| format!("{n:0width$}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(list: &str) -> Vec<String> {
        expand(list).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn plain_hosts_and_single_groups() {
        assert_eq!(ok("localhost"), ["localhost"]);
        assert_eq!(ok("a,b, c"), ["a", "b", "c"]);
        assert_eq!(
            ok("node[01-03,7],gpu5"),
            ["node01", "node02", "node03", "node7", "gpu5"]
        );
        assert_eq!(ok("n[1-3]"), ["n1", "n2", "n3"]);
        assert_eq!(ok("n[5]"), ["n5"]);
    }

    #[test]
    fn padding_follows_the_lower_bound() {
        assert_eq!(ok("n[08-11]"), ["n08", "n09", "n10", "n11"]);
        assert_eq!(ok("n[8-11]"), ["n8", "n9", "n10", "n11"]);
        assert_eq!(ok("n[098-100]"), ["n098", "n099", "n100"]);
        assert_eq!(ok("n[0-2]"), ["n0", "n1", "n2"]);
    }

    #[test]
    fn several_groups_give_every_combination_and_suffixes_stay() {
        assert_eq!(ok("r[1-2]n[1-2]"), ["r1n1", "r1n2", "r2n1", "r2n2"]);
        assert_eq!(ok("c[1-2]-ib,login"), ["c1-ib", "c2-ib", "login"]);
        assert_eq!(ok("[1-2]x"), ["1x", "2x"]);
    }

    #[test]
    fn malformed_lists_are_refused_with_the_reason() {
        for (list, why) in [
            ("", "no host"),
            (" , ", "no host"),
            ("n[1-3", "not closed"),
            ("n1-3]", "without '['"),
            ("n[[1]]", "nested"),
            ("n[3-1]", "backwards"),
            ("n[a-c]", "not a number"),
            ("n[]", "not a number"),
            ("n[1-]", "not a number"),
            ("n[0-99999999]", "more than"),
            ("a[0-999]b[0-999]", "more than"),
        ] {
            let e = expand(list).expect_err(list);
            assert!(e.reason.contains(why), "{list}: {e}");
            assert!(e.to_string().contains(&format!("{list:?}")), "{e}");
        }
    }
}
