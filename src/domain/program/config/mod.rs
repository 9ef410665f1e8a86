//! The TOML format of programs, and its validation into [`Program`](super::Program)s.
//!
//! A file holds one or more `[[program]]` tables. Every amount and rate is a decimal
//! *string*: a TOML float cannot carry money exactly. Each error names the file, the program
//! and the field, and says what is expected. The format is documented in `programs/README.md`;
//! the presets in `programs/` are its examples.

mod program;
mod review;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{ProgramKind, ProgramSet, Window};
use program::ProgramWire;

/// The presets shipped with the binary, by name.
pub const PRESETS: [(&str, &str); 2] = [
    ("vast", include_str!("../../../../programs/vast.toml")),
    ("runpod", include_str!("../../../../programs/runpod.toml")),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    #[error("{at}.{field}: {message}")]
    Field {
        at: String,
        field: String,
        message: String,
    },
    #[error(
        "unknown program preset {0:?}; presets are vast and runpod, or give a path to a .toml file"
    )]
    UnknownPreset(String),
    #[error("cannot read program file {path}: {message}")]
    Read { path: String, message: String },
}

impl ConfigError {
    pub(crate) fn field(at: String, field: &str, message: impl Into<String>) -> Self {
        ConfigError::Field {
            at,
            field: field.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWire {
    #[serde(default)]
    program: Vec<ProgramWire>,
}

impl ProgramSet {
    /// Parses and validates one TOML file. `env` resolves environment variables (bonus seeds),
    /// so tests can supply their own.
    pub fn from_toml(
        source_name: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProgramSet, ConfigError> {
        let wire: FileWire = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            source_name: source_name.to_string(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        if wire.program.is_empty() {
            return Err(ConfigError::Syntax {
                source_name: source_name.to_string(),
                message: "no [[program]] table; a program file describes at least one program"
                    .into(),
            });
        }
        let mut set = ProgramSet::default();
        for (i, p) in wire.program.into_iter().enumerate() {
            let at = format!("{source_name}: program[{i}] ({})", p.id);
            let program = p.into_program(&at, env)?;
            set = set.merge(ProgramSet::from_programs(vec![program]))?;
        }
        set.check_references(source_name)?;
        Ok(set)
    }

    /// Loads a list of presets and file paths (`vast,runpod`, `./my-platform.toml`).
    pub fn load(
        specs: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProgramSet, ConfigError> {
        let mut set = ProgramSet::default();
        for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let (name, text) = if let Some((name, text)) = PRESETS.iter().find(|(n, _)| *n == spec)
            {
                (format!("preset {name}"), (*text).to_string())
            } else if spec.ends_with(".toml") || spec.contains('/') {
                let text = std::fs::read_to_string(spec).map_err(|e| ConfigError::Read {
                    path: spec.to_string(),
                    message: e.to_string(),
                })?;
                (spec.to_string(), text)
            } else {
                return Err(ConfigError::UnknownPreset(spec.to_string()));
            };
            set = set.merge(ProgramSet::from_toml(&name, &text, env)?)?;
        }
        set.check_references("programs")?;
        Ok(set)
    }

    fn check_references(&self, source_name: &str) -> Result<(), ConfigError> {
        for p in self.iter() {
            let target = match &p.kind {
                ProgramKind::Affiliate(a) => &a.referral_program,
                ProgramKind::Bonus(b) => &b.referral_program,
                _ => continue,
            };
            let ok = self.get(target).is_some_and(|t| t.referral().is_some());
            if !ok {
                return Err(ConfigError::field(
                    format!("{source_name}: program {}", p.id),
                    "referral_program",
                    format!("{target:?} is not a referral program in this configuration"),
                ));
            }
            if let ProgramKind::Affiliate(a) = &p.kind {
                let twice = self
                    .iter()
                    .filter(|o| {
                        o.affiliate()
                            .is_some_and(|b| b.referral_program == a.referral_program)
                    })
                    .count();
                if twice > 1 {
                    return Err(ConfigError::field(
                        format!("{source_name}: program {}", p.id),
                        "referral_program",
                        format!(
                            "{} already has an affiliate program; one upgrade per referral program",
                            a.referral_program
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Parses a decimal string field.
fn decimal(at: &str, field: &str, value: &str) -> Result<Decimal, ConfigError> {
    Decimal::from_str_exact(value.trim())
        .map(|d| d.normalize())
        .map_err(|_| {
            ConfigError::field(
                at.to_string(),
                field,
                format!("{value:?} is not a decimal number; write it as a string such as \"0.03\""),
            )
        })
}

fn fraction(at: &str, field: &str, value: &str) -> Result<Decimal, ConfigError> {
    let d = decimal(at, field, value)?;
    if d < Decimal::ZERO || d > Decimal::ONE {
        return Err(ConfigError::field(
            at.to_string(),
            field,
            format!("{d} must be between 0 and 1 (0.03 is 3%)"),
        ));
    }
    Ok(d)
}

fn window(at: &str, field: &str, value: &str) -> Result<Window, ConfigError> {
    let v = value.trim().to_ascii_lowercase();
    if v == "lifetime" {
        return Ok(Window::Lifetime);
    }
    let bad = || {
        ConfigError::field(
            at.to_string(),
            field,
            format!("{value:?} is not a window; write \"lifetime\" or \"6 months\""),
        )
    };
    let (n, unit) = v.split_once(' ').ok_or_else(bad)?;
    let n: u32 = n.parse().map_err(|_| bad())?;
    match unit.trim() {
        "month" | "months" if n > 0 && n <= 1200 => Ok(Window::Months(n)),
        _ => Err(bad()),
    }
}

fn duration_secs(at: &str, field: &str, value: &str) -> Result<u64, ConfigError> {
    let bad = || {
        ConfigError::field(
            at.to_string(),
            field,
            format!(
                "{value:?} is not a duration; write e.g. \"1 day\", \"24 hours\" or \"90 minutes\""
            ),
        )
    };
    let v = value.trim().to_ascii_lowercase();
    let (n, unit) = v.split_once(' ').ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "second" | "seconds" => 1,
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3_600,
        "day" | "days" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(per).ok_or_else(bad)
}

#[cfg(test)]
mod tests;
