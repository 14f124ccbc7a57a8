//! Policies: which products are banned or required, and by when. A policy
//! with dates is a campaign (BOD 17-01: identify within 30 days, remove
//! within 90).

use crate::evaluate::Detection;
use crate::inventory::Platform;
use crate::model::{Product, State};
use serde::{Deserialize, Serialize};

/// Which products a rule names. Every field given must match.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// A vendor name, compared without regard to case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// A product id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// A category name, e.g. `edr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Only hosts of this platform are concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Selector {
    fn names_product(&self) -> bool {
        self.vendor.is_some() || self.product.is_some() || self.category.is_some()
    }

    fn matches(&self, vendor: &str, id: &str, category: &str) -> bool {
        self.vendor
            .as_ref()
            .is_none_or(|v| v.eq_ignore_ascii_case(vendor))
            && self.product.as_ref().is_none_or(|p| p == id)
            && self.category.as_ref().is_none_or(|c| c == category)
    }

    fn applies_to(&self, platform: Option<Platform>) -> bool {
        match (self.platform, platform) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        }
    }

    /// A short human description, e.g. `vendor Kaspersky` or `category edr on windows`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = &self.vendor {
            parts.push(format!("vendor {v}"));
        }
        if let Some(p) = &self.product {
            parts.push(format!("product {p}"));
        }
        if let Some(c) = &self.category {
            parts.push(format!("category {c}"));
        }
        if let Some(p) = self.platform {
            parts.push(format!("on {}", p.as_str()));
        }
        parts.join(" ")
    }
}

/// A policy: products banned and products required, with a campaign's dates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Stable id, e.g. `bod-17-01`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Date issued, `YYYY-MM-DD`.
    pub issued: String,
    /// Date by which the products must be identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identify_by: Option<String>,
    /// Date by which banned products must be gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_by: Option<String>,
    /// The public text of the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Products banned.
    #[serde(default)]
    pub ban: Vec<Selector>,
    /// Products required (one running or installed product per rule).
    #[serde(default)]
    pub require: Vec<Selector>,
}

/// A banned product found on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The product.
    pub product_id: String,
    /// Its state: a remnant is a violation too, since it is not gone.
    pub state: State,
    /// The ban rule it breaks.
    pub rule: String,
}

/// A policy applied to one host's detections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Policy id.
    pub policy: String,
    /// Policy name.
    pub name: String,
    /// `pass` or `fail`.
    pub verdict: String,
    /// Banned products found.
    pub violations: Vec<Violation>,
    /// Require rules no running or installed product satisfies.
    pub missing_required: Vec<String>,
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
        if p.ban.is_empty() && p.require.is_empty() {
            return Err(format!("policy {:?} bans and requires nothing", p.id));
        }
        if p.ban.iter().chain(&p.require).any(|s| !s.names_product()) {
            return Err(format!(
                "policy {:?}: a rule names no vendor, product or category",
                p.id
            ));
        }
        Ok(p)
    }

    /// Whether this policy bans the product (on any platform).
    pub fn bans(&self, p: &Product) -> bool {
        self.ban
            .iter()
            .any(|s| s.matches(&p.vendor, &p.id, p.category.as_str()))
    }

    /// What the policy says of a product on a platform: `banned`,
    /// `required`, or nothing when no rule names it (a ban wins).
    pub fn rule_for(
        &self,
        vendor: &str,
        product_id: &str,
        category: &str,
        platform: Option<Platform>,
    ) -> Option<&'static str> {
        let hit = |rules: &[Selector]| {
            rules
                .iter()
                .any(|s| s.applies_to(platform) && s.matches(vendor, product_id, category))
        };
        if hit(&self.ban) {
            Some("banned")
        } else if hit(&self.require) {
            Some("required")
        } else {
            None
        }
    }

    /// Applies the policy to a host's detections.
    pub fn verdict(&self, detections: &[Detection], platform: Option<Platform>) -> Verdict {
        let mut violations = Vec::new();
        for d in detections {
            if let Some(rule) = self.ban.iter().find(|s| {
                s.applies_to(platform) && s.matches(&d.vendor, &d.product_id, d.category.as_str())
            }) {
                violations.push(Violation {
                    product_id: d.product_id.clone(),
                    state: d.state,
                    rule: format!("ban {}", rule.describe()),
                });
            }
        }
        let missing_required: Vec<String> = self
            .require
            .iter()
            .filter(|s| s.applies_to(platform))
            .filter(|s| {
                !detections.iter().any(|d| {
                    d.state > State::Remnant
                        && s.matches(&d.vendor, &d.product_id, d.category.as_str())
                })
            })
            .map(|s| format!("require {}", s.describe()))
            .collect();
        Verdict {
            policy: self.id.clone(),
            name: self.name.clone(),
            verdict: if violations.is_empty() && missing_required.is_empty() {
                "pass".into()
            } else {
                "fail".into()
            },
            violations,
            missing_required,
        }
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
    use crate::model::Category;

    fn det(vendor: &str, id: &str, category: Category, state: State) -> Detection {
        Detection {
            product_id: id.into(),
            vendor: vendor.into(),
            product: id.into(),
            category,
            state,
            version: String::new(),
            evidence: vec![],
        }
    }

    #[test]
    fn bad_dates_and_empty_rules_are_refused() {
        let e = Policy::parse("id='x'\nname='x'\nissued='2017-9-13'\n[[ban]]\nvendor='K'\n")
            .unwrap_err();
        assert!(e.contains("issued"), "{e}");
        let e = Policy::parse("id='x'\nname='x'\nissued='2017-09-13'\n").unwrap_err();
        assert!(e.contains("bans and requires nothing"), "{e}");
        let e = Policy::parse("id='x'\nname='x'\nissued='2017-09-13'\n[[ban]]\nplatform='linux'\n")
            .unwrap_err();
        assert!(e.contains("names no vendor"), "{e}");
    }

    #[test]
    fn a_remnant_of_a_banned_product_still_fails() {
        let p =
            Policy::parse("id='b'\nname='b'\nissued='2017-09-13'\n[[ban]]\nvendor='kaspersky'\n")
                .unwrap();
        let v = p.verdict(
            &[det(
                "Kaspersky",
                "kaspersky.x",
                Category::Antivirus,
                State::Remnant,
            )],
            None,
        );
        assert_eq!(v.verdict, "fail");
        assert_eq!(v.violations[0].state, State::Remnant);
        let v = p.verdict(
            &[det("ESET", "eset.x", Category::Antivirus, State::Running)],
            None,
        );
        assert_eq!(v.verdict, "pass");
    }

    #[test]
    fn requirements_are_per_platform_and_need_more_than_a_remnant() {
        let p = Policy::parse(
            "id='edr'\nname='every Windows host runs an EDR'\nissued='2024-01-01'\n[[require]]\ncategory='edr'\nplatform='windows'\n",
        )
        .unwrap();
        let edr = |s| det("CrowdStrike", "crowdstrike.falcon", Category::Edr, s);
        assert_eq!(p.verdict(&[], Some(Platform::Linux)).verdict, "pass");
        let v = p.verdict(&[edr(State::Remnant)], Some(Platform::Windows));
        assert_eq!(v.verdict, "fail");
        assert_eq!(v.missing_required, ["require category edr on windows"]);
        assert_eq!(
            p.verdict(&[edr(State::Running)], Some(Platform::Windows))
                .verdict,
            "pass"
        );
    }
}
