//! The `products` table.

use oxcart_db::{self as db, Db};
use oxcart_platform::money::Currency;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::Error;
use crate::domain::Product;

const COLUMNS: &str = "id, sku, name, description, price, currency, tax_class, stock, version, created_at, updated_at";

/// Where a product page ends: products are listed by lower-cased name, then id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct After {
    #[serde(rename = "n")]
    pub search_name: String,
    #[serde(rename = "i")]
    pub id: Uuid,
}

#[derive(Debug, Clone)]
pub struct ProductStore {
    db: Db,
}

impl ProductStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn insert(&self, product: &Product) -> Result<(), Error> {
        let mut tx = self.db.begin().await?;
        let result = db::query(
            "INSERT INTO products (id, sku, name, search_name, description, price, currency, tax_class, stock, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(product.id.to_string())
        .bind(&product.sku)
        .bind(&product.name)
        .bind(product.name.to_lowercase())
        .bind(&product.description)
        .bind(product.price)
        .bind(product.currency.code())
        .bind(&product.tax_class)
        .bind(product.stock)
        .bind(product.version)
        .bind(db::timestamp(product.created_at))
        .bind(db::timestamp(product.updated_at))
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => Ok(tx.commit().await?),
            Err(e) if db::is_unique_violation(&e) => {
                // Returns once whatever took it is durable (see `db::group`).
                tx.rollback().await?;
                Err(Error::SkuTaken(product.sku.clone()))
            }
            Err(e) => Err(Error::Storage(e)),
        }
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Product>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM products WHERE id = $1");
        let row = db::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&mut *self.db.read().await?)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The products among `ids` that exist, in no particular order. Read from the
    /// primary: an order is priced at the current price, never at a replica's.
    pub async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Product>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {COLUMNS} FROM products WHERE id IN ({})",
            placeholders.join(", ")
        );
        let mut query = db::query(&sql);
        for id in ids {
            query = query.bind(id.to_string());
        }
        let rows = query.fetch_all(&mut *self.db.read_primary().await?).await?;
        rows.iter().map(decode).collect()
    }

    /// A page of products whose name contains `search` (lower-cased), after `after`.
    pub async fn list(
        &self,
        search: Option<&str>,
        after: Option<&After>,
        limit: u32,
    ) -> Result<Vec<(Product, After)>, Error> {
        let pattern = search.map(|s| format!("%{}%", escape_like(s)));
        let sql = format!(
            "SELECT {COLUMNS}, search_name FROM products \
             WHERE ($1 IS NULL OR search_name LIKE $1 ESCAPE '\\') \
               AND ($2 IS NULL OR search_name > $2 OR (search_name = $2 AND id > $3)) \
             ORDER BY search_name, id LIMIT $4"
        );
        let rows = db::query(&sql)
            .bind(pattern)
            .bind(after.map(|a| a.search_name.clone()))
            .bind(after.map(|a| a.id.to_string()))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.db.read().await?)
            .await?;
        rows.iter()
            .map(|row| {
                let product = decode(row)?;
                let search_name = row.try_get("search_name")?;
                let id = product.id;
                Ok((product, After { search_name, id }))
            })
            .collect()
    }

    /// Reads a product for update and hands it to `change`; writes it back with a new
    /// version if `change` says it changed. The read and the write share a transaction,
    /// so concurrent edits serialise instead of overwriting each other.
    pub async fn update(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut Product) -> Result<bool, Error>,
    ) -> Result<Product, Error> {
        let mut tx = self.db.begin().await?;
        let sql = format!("SELECT {COLUMNS} FROM products WHERE id = $1");
        let row = db::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let mut product = row
            .as_ref()
            .map(decode)
            .transpose()?
            .ok_or(Error::NotFound)?;
        if !change(&mut product)? {
            return Ok(product);
        }
        product.version += 1;
        product.updated_at = db::now();
        db::query(
            "UPDATE products SET name = $1, search_name = $2, description = $3, price = $4, currency = $5, \
             tax_class = $6, stock = $7, version = $8, updated_at = $9 WHERE id = $10",
        )
        .bind(&product.name)
        .bind(product.name.to_lowercase())
        .bind(&product.description)
        .bind(product.price)
        .bind(product.currency.code())
        .bind(&product.tax_class)
        .bind(product.stock)
        .bind(product.version)
        .bind(db::timestamp(product.updated_at))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(product)
    }
}

/// Escapes `LIKE` wildcards so a search for `50%` means the text "50%".
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn decode(row: &AnyRow) -> Result<Product, Error> {
    let corrupt = |what: &str| Error::Corrupt(what.to_owned());
    let currency: String = row.try_get("currency")?;
    let timestamp = |column: &str| -> Result<_, Error> {
        db::parse_timestamp(&row.try_get::<String, _>(column)?).map_err(|_| corrupt(column))
    };
    Ok(Product {
        id: row
            .try_get::<String, _>("id")?
            .parse()
            .map_err(|_| corrupt("id"))?,
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price: row.try_get("price")?,
        currency: Currency::parse(&currency).ok_or_else(|| corrupt("currency"))?,
        tax_class: row.try_get("tax_class")?,
        stock: row.try_get("stock")?,
        version: row.try_get("version")?,
        created_at: timestamp("created_at")?,
        updated_at: timestamp("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_literal() {
        assert_eq!(escape_like(r"50%_off\"), r"50\%\_off\\");
    }
}
