//! What a valid product is.

use chrono::{DateTime, Utc};
use oxcart_platform::money::Currency;
use uuid::Uuid;

/// Largest price accepted, in minor units; keeps every order total far from overflow.
pub const MAX_PRICE: i64 = 1_000_000_000_000;
pub const MAX_STOCK: i64 = 1_000_000_000;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 5000;
pub const MAX_SKU_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: i64,
    pub currency: Currency,
    /// Its tax class (`[tax]` in configuration), which sets the rate its invoices show.
    pub tax_class: String,
    pub stock: i64,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A stock-keeping unit: upper-cased, letters, digits and `-_.` only.
pub fn parse_sku(raw: &str) -> Result<String, String> {
    let sku = raw.trim().to_uppercase();
    if sku.is_empty() || sku.chars().count() > MAX_SKU_CHARS {
        return Err(format!("must be 1 to {MAX_SKU_CHARS} characters"));
    }
    if !sku
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err("may contain only letters, digits, '-', '_' and '.'".into());
    }
    Ok(sku)
}

pub fn parse_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("must be 1 to {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(name.to_owned())
}

pub fn parse_description(raw: &str) -> Result<String, String> {
    let description = raw.trim();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "must be at most {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    Ok(description.to_owned())
}

pub fn parse_price(price: i64) -> Result<i64, String> {
    if (0..=MAX_PRICE).contains(&price) {
        Ok(price)
    } else {
        Err(format!("must be between 0 and {MAX_PRICE}"))
    }
}

pub fn parse_currency(code: &str) -> Result<Currency, String> {
    Currency::parse(code)
        .ok_or_else(|| "must be an upper-case ISO 4217 currency code such as EUR".into())
}

pub fn parse_stock(stock: i64) -> Result<i64, String> {
    if (0..=MAX_STOCK).contains(&stock) {
        Ok(stock)
    } else {
        Err(format!("must be between 0 and {MAX_STOCK}"))
    }
}

/// A product to create, validated.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: i64,
    pub currency: Currency,
    pub tax_class: String,
    pub stock: i64,
}

/// Changes to a product, validated; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<i64>,
    pub currency: Option<Currency>,
    pub tax_class: Option<String>,
    pub stock: Option<i64>,
}

impl Product {
    /// Applies `changes`; true when anything changed.
    pub fn apply(&mut self, changes: Changes) -> bool {
        let before = self.clone();
        if let Some(name) = changes.name {
            self.name = name;
        }
        if let Some(description) = changes.description {
            self.description = description;
        }
        if let Some(price) = changes.price {
            self.price = price;
        }
        if let Some(currency) = changes.currency {
            self.currency = currency;
        }
        if let Some(tax_class) = changes.tax_class {
            self.tax_class = tax_class;
        }
        if let Some(stock) = changes.stock {
            self.stock = stock;
        }
        *self != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_upper_cased_and_restricted() {
        assert_eq!(parse_sku(" mug-01.b ").unwrap(), "MUG-01.B");
        assert!(parse_sku("").is_err());
        assert!(parse_sku("has space").is_err());
        assert!(parse_sku(&"x".repeat(65)).is_err());
    }

    #[test]
    fn prices_and_stock_are_bounded() {
        assert!(parse_price(-1).is_err());
        assert!(parse_price(MAX_PRICE + 1).is_err());
        assert_eq!(parse_price(0), Ok(0));
        assert!(parse_stock(-5).is_err());
    }
}
