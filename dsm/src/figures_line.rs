//! The one line in which a bench node process hands its figures to the launcher (the CLI
//! starts the nodes, reads their output and finds the line): a prefix naming the bench, then
//! one `key=value` field per figure, each an `f64` written with 3 decimals, e.g.
//! `memlink-dsm-migration read_miss_us=40.250 migrate_us=90.500 migrate_and_touch_us=130.000`.
//!
//! A node's output is untrusted text: a line parses only when it carries every field of the
//! set once or more (the last one counts), no other key, and values that parse as numbers.
//!
//! ```
//! use memlink_dsm::figures_line::FiguresLine;
//! use memlink_dsm::migration_bench::MigrationFigures;
//! let f = MigrationFigures { read_miss_us: 40.25, migrate_us: 90.5, migrate_and_touch_us: 130.0 };
//! let output = format!("some other line\n{}\n", f.to_line());
//! assert_eq!(MigrationFigures::find_in(&output), Some(f));
//! ```

/// A set of named `f64` figures that travels as one line (see the module's docs). Implement
/// it with [`figures_line!`](crate::figures_line!), which names every field once.
pub trait FiguresLine: Sized {
    /// The line's first word, naming the bench.
    const PREFIX: &'static str;
    /// The keys, in the line's order.
    const FIELDS: &'static [&'static str];

    /// The values, in [`FiguresLine::FIELDS`]'s order.
    fn values(&self) -> Vec<f64>;

    /// The figures from values in [`FiguresLine::FIELDS`]'s order; `None` if there are not
    /// exactly as many.
    fn from_values(values: &[f64]) -> Option<Self>;

    /// The figures as (key, value) pairs, in the line's order.
    fn named(&self) -> Vec<(&'static str, f64)> {
        Self::FIELDS.iter().copied().zip(self.values()).collect()
    }

    /// The line for the launcher: the prefix, then ` key=value` for every figure.
    fn to_line(&self) -> String {
        let mut s = Self::PREFIX.to_string();
        for (k, v) in self.named() {
            s.push_str(&format!(" {k}={v:.3}"));
        }
        s
    }

    /// Parses a line written by [`FiguresLine::to_line`]; `None` for any other line.
    fn parse_line(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix(Self::PREFIX)?;
        let mut values = vec![f64::NAN; Self::FIELDS.len()];
        for field in rest.split_whitespace() {
            let (k, v) = field.split_once('=')?;
            let i = Self::FIELDS.iter().position(|f| *f == k)?;
            values[i] = v.parse().ok()?;
        }
        if values.iter().any(|v| v.is_nan()) {
            return None;
        }
        Self::from_values(&values)
    }

    /// The first figures line in a node process's output.
    fn find_in(output: &str) -> Option<Self> {
        output.lines().find_map(Self::parse_line)
    }
}

/// Implements [`FiguresLine`] for a struct of `f64` fields:
/// `figures_line!(Type, "line-prefix", [field, ...])`, the fields in the line's order (their
/// names are the keys) and every field of the struct named.
#[macro_export]
macro_rules! figures_line {
    ($ty:ident, $prefix:literal, [$($field:ident),+ $(,)?]) => {
        impl $crate::figures_line::FiguresLine for $ty {
            const PREFIX: &'static str = $prefix;
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),+];

            fn values(&self) -> Vec<f64> {
                vec![$(self.$field),+]
            }

            fn from_values(values: &[f64]) -> Option<Self> {
                // Struct fields are evaluated in the order written: FIELDS's order.
                let mut values = values.iter().copied();
                let figures = $ty { $($field: values.next()?),+ };
                values.next().is_none().then_some(figures)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Two {
        a_us: f64,
        b: f64,
    }
    crate::figures_line!(Two, "memlink-test-figures", [a_us, b]);

    #[test]
    fn a_line_round_trips_and_anything_else_is_refused() {
        let two = Two { a_us: 1.5, b: 2.0 };
        assert_eq!(two.to_line(), "memlink-test-figures a_us=1.500 b=2.000");
        assert_eq!(
            Two::find_in(&format!("x\n {} \ny", two.to_line())),
            Some(two)
        );
        assert_eq!(two.named(), vec![("a_us", 1.5), ("b", 2.0)]);
        for bad in [
            "memlink-test-figures a_us=1",
            "memlink-test-figures a_us=1 b=2 c=3",
            "memlink-test-figures a_us=1 b=x",
            "memlink-test-figures a_us=1 b",
            "memlink-test-figures a_us=1 b=NaN",
            "other a_us=1 b=2",
        ] {
            assert_eq!(Two::parse_line(bad), None, "{bad}");
        }
        assert_eq!(Two::from_values(&[1.0]), None);
        assert_eq!(Two::from_values(&[1.0, 2.0, 3.0]), None);
    }
}
