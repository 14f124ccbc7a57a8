//! Policies: which products are banned, and by when they must be gone.

use crate::model::Product;
use serde::Deserialize;

/// Which products a rule names. Every field given must match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// A vendor name, compared without regard to case.
    #[serde(default)]
    pub vendor: Option<String>,
    /// A product id.
    #[serde(default)]
    pub product: Option<String>,
    /// A category name, e.g. `antivirus`.
    #[serde(default)]
    pub category: Option<String>,
}

impl Selector {
    fn matches(&self, p: &Product) -> bool {
        self.vendor
            .as_ref()
            .is_none_or(|v| v.eq_ignore_ascii_case(&p.vendor))
            && self.product.as_ref().is_none_or(|id| *id == p.id)
            && self
                .category
                .as_ref()
                .is_none_or(|c| c == p.category.as_str())
    }
}

/// A policy: products banned (and, later, required) with the campaign's dates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Stable id, e.g. `bod-17-01`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Date issued, `YYYY-MM-DD`.
    pub issued: String,
    /// Date by which the products must be identified.
    #[serde(default)]
    pub identify_by: Option<String>,
    /// Date by which the products must be gone.
    #[serde(default)]
    pub remove_by: Option<String>,
    /// The public text of the policy.
    #[serde(default)]
    pub source: Option<String>,
    /// Products banned.
    #[serde(default)]
    pub ban: Vec<Selector>,
}

impl Policy {
    /// Reads one policy file; the error names what is wrong.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let p: Policy = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        for (what, d) in [
            ("issued", Some(&p.issued)),
            ("identify_by", p.identify_by.as_ref()),
            ("remove_by", p.remove_by.as_ref()),
        ] {
            if let Some(d) = d
                && !is_date(d)
            {
                return Err(format!("policy {:?}: {what} {d:?} is not YYYY-MM-DD", p.id));
            }
        }
        if p.ban.is_empty() {
            return Err(format!("policy {:?} bans nothing", p.id));
        }
        if p.ban
            .iter()
            .any(|s| s.vendor.is_none() && s.product.is_none() && s.category.is_none())
        {
            return Err(format!(
                "policy {:?}: a ban names no vendor, product or category",
                p.id
            ));
        }
        Ok(p)
    }

    /// Whether this policy bans the product.
    pub fn bans(&self, p: &Product) -> bool {
        self.ban.iter().any(|s| s.matches(p))
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_dates_and_empty_bans_are_refused() {
        let e = Policy::parse("id='x'\nname='x'\nissued='2017-9-13'\n[[ban]]\nvendor='K'\n")
            .unwrap_err();
        assert!(e.contains("issued"), "{e}");
        let e = Policy::parse("id='x'\nname='x'\nissued='2017-09-13'\n").unwrap_err();
        assert!(e.contains("bans nothing"), "{e}");
        let e = Policy::parse("id='x'\nname='x'\nissued='2017-09-13'\n[[ban]]\n").unwrap_err();
        assert!(e.contains("names no vendor"), "{e}");
    }
}
