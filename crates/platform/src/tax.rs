//! Tax classes and their rates: `[tax]` in configuration.
//!
//! A product belongs to a tax class (`standard`, `reduced`, `zero`, or any the shop
//! names); the rate of each class is configuration, so a rate change is a restart, not a
//! migration. Prices include tax, as consumer prices do in the EU and the UK: an invoice
//! takes the tax back out of each rate's gross sum ([`Rate::tax_in`]), once per rate
//! rather than per line, as EU invoicing rules ask, so rounding never drifts with the
//! number of lines.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The class a product has unless it names another.
pub const DEFAULT_CLASS: &str = "standard";

/// Longest class name accepted.
pub const MAX_CLASS_CHARS: usize = 32;

/// A tax rate, in hundredths of a percent (2300 is 23 %), so that no rate is a float.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u32);

impl Rate {
    /// The largest rate accepted, 100 %.
    pub const MAX: Rate = Rate(10_000);

    /// `hundredths` of a percent; `None` above 100 %.
    pub fn from_hundredths(hundredths: u32) -> Option<Self> {
        (hundredths <= Self::MAX.0).then_some(Self(hundredths))
    }

    pub fn hundredths(self) -> u32 {
        self.0
    }

    /// Parses `"23"`, `"5.5"` or `"7.25"` (percent, at most two decimals).
    pub fn parse_percent(text: &str) -> Result<Self, String> {
        let bad =
            || format!("{text:?} is not a percentage from 0 to 100 with at most two decimals");
        let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        if whole.is_empty()
            || fraction.len() > 2
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: u32 = whole.parse().map_err(|_| bad())?;
        let fraction: u32 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
        whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(fraction))
            .and_then(Self::from_hundredths)
            .ok_or_else(bad)
    }

    /// The tax contained in `gross` (which includes it), rounded half away from zero:
    /// `gross × rate / (100 % + rate)`.
    pub fn tax_in(self, gross: i64) -> i64 {
        let rate = i128::from(self.0);
        let divisor = 10_000 + rate;
        let magnitude = (i128::from(gross).abs() * rate * 2 + divisor) / (2 * divisor);
        // At most |gross|, so it fits.
        let magnitude = i64::try_from(magnitude).unwrap_or(i64::MAX);
        if gross < 0 { -magnitude } else { magnitude }
    }
}

impl fmt::Display for Rate {
    /// `23%`, `5.5%`, `7.25%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / 100, self.0 % 100);
        match fraction {
            0 => write!(f, "{whole}%"),
            f10 if f10 % 10 == 0 => write!(f, "{whole}.{}%", f10 / 10),
            _ => write!(f, "{whole}.{fraction:02}%"),
        }
    }
}

/// A rate is written in configuration as a number of percent (`23`, `5.5`) or a string
/// of one (`"7.25"`).
impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Integer(u32),
            Float(f64),
            Text(String),
        }
        let text = match Written::deserialize(deserializer)? {
            Written::Integer(n) => n.to_string(),
            // Shortest round-trip form: 5.5 stays "5.5", never "5.499999".
            Written::Float(x) => x.to_string(),
            Written::Text(s) => s,
        };
        Self::parse_percent(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_string();
        serializer.serialize_str(text.trim_end_matches('%'))
    }
}

/// `[tax]`: the rate of each tax class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaxConfig {
    /// Class name to rate in percent. Set your country's: the defaults are the UK's
    /// (20 %, 5 %, 0 %).
    pub rates: BTreeMap<String, Rate>,
}

impl Default for TaxConfig {
    fn default() -> Self {
        Self {
            rates: [
                (DEFAULT_CLASS, Rate(2000)),
                ("reduced", Rate(500)),
                ("zero", Rate(0)),
            ]
            .into_iter()
            .map(|(class, rate)| (class.to_owned(), rate))
            .collect(),
        }
    }
}

impl TaxConfig {
    /// The rate of `class`, when configured.
    pub fn rate(&self, class: &str) -> Option<Rate> {
        self.rates.get(class).copied()
    }

    /// Whether `class` may be given to a product: a configured class.
    pub fn check_class(&self, class: &str) -> Result<String, String> {
        let class = class.trim();
        if self.rates.contains_key(class) {
            return Ok(class.to_owned());
        }
        let known: Vec<&str> = self.rates.keys().map(String::as_str).collect();
        Err(format!(
            "must be a configured tax class: {}",
            known.join(", ")
        ))
    }

    /// Every class is a name a product can carry, and `standard` (every product's class
    /// unless it names another) has a rate.
    pub fn validate(&self) -> Result<(), String> {
        for class in self.rates.keys() {
            let valid = !class.is_empty()
                && class.chars().count() <= MAX_CLASS_CHARS
                && class.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !valid {
                return Err(format!(
                    "tax.rates: class {class:?} must be 1 to {MAX_CLASS_CHARS} lower-case letters, digits, - or _"
                ));
            }
        }
        if !self.rates.contains_key(DEFAULT_CLASS) {
            return Err(format!(
                "tax.rates: needs a rate for {DEFAULT_CLASS:?}, every product's class unless it names another"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_from_percentages() {
        assert_eq!(Rate::parse_percent("23"), Ok(Rate(2300)));
        assert_eq!(Rate::parse_percent("5.5"), Ok(Rate(550)));
        assert_eq!(Rate::parse_percent("7.25"), Ok(Rate(725)));
        assert_eq!(Rate::parse_percent("0"), Ok(Rate(0)));
        for bad in ["", "-1", "100.01", "5.555", "1e2", "abc", ".5"] {
            assert!(Rate::parse_percent(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Rate(2300).to_string(), "23%");
        assert_eq!(Rate(550).to_string(), "5.5%");
        assert_eq!(Rate(725).to_string(), "7.25%");
    }

    #[test]
    fn configuration_takes_numbers_and_strings() {
        let config: TaxConfig =
            toml::from_str("rates = { standard = 23, reduced = 5.5, special = \"7.25\" }").unwrap();
        assert_eq!(config.rate("standard"), Some(Rate(2300)));
        assert_eq!(config.rate("reduced"), Some(Rate(550)));
        assert_eq!(config.rate("special"), Some(Rate(725)));
        assert!(toml::from_str::<TaxConfig>("rates = { standard = 120 }").is_err());
        assert!(config.validate().is_ok());
        let no_standard: TaxConfig = toml::from_str("rates = { reduced = 5 }").unwrap();
        assert!(no_standard.validate().unwrap_err().contains("standard"));
    }

    #[test]
    fn the_tax_in_a_gross_amount_rounds_half_away_from_zero() {
        // 123.00 at 23 % holds 23.00 of tax.
        assert_eq!(Rate(2300).tax_in(12_300), 2_300);
        // 10.00 at 20 %: 1.6666… → 1.67.
        assert_eq!(Rate(2000).tax_in(1_000), 167);
        assert_eq!(Rate(2000).tax_in(-1_000), -167);
        assert_eq!(Rate(0).tax_in(1_000), 0);
        assert!(Rate(2300).tax_in(i64::MAX) < i64::MAX);
    }

    #[test]
    fn a_product_class_must_be_configured() {
        let config = TaxConfig::default();
        assert_eq!(config.check_class(" reduced "), Ok("reduced".to_owned()));
        let error = config.check_class("luxury").unwrap_err();
        assert!(error.contains("reduced, standard, zero"), "{error}");
    }
}
