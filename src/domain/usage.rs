//! What spend was on. Programs set a rate per category; purchases of credits are not spend.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageCategory {
    /// A rented instance (Vast).
    Instance,
    /// A GPU pod (Runpod).
    Pod,
    /// Serverless endpoints (Runpod).
    Serverless,
    Storage,
    Other,
}

impl UsageCategory {
    pub const ALL: [UsageCategory; 5] = [
        UsageCategory::Instance,
        UsageCategory::Pod,
        UsageCategory::Serverless,
        UsageCategory::Storage,
        UsageCategory::Other,
    ];

    pub fn code(self) -> &'static str {
        match self {
            UsageCategory::Instance => "instance",
            UsageCategory::Pod => "pod",
            UsageCategory::Serverless => "serverless",
            UsageCategory::Storage => "storage",
            UsageCategory::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown usage category {0:?}; expected instance, pod, serverless, storage or other")]
pub struct UnknownCategory(pub String);

impl FromStr for UsageCategory {
    type Err = UnknownCategory;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        UsageCategory::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCategory(s.to_string()))
    }
}

impl fmt::Display for UsageCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
