//! Sessions: the `refresh_tokens` table, and rotating a token for the next.
//!
//! A sign-in starts a session: a family of refresh tokens, whose id is the `sid` of every
//! access token issued in it. Each refresh retires the presented token and issues the
//! next (rotation), so a stolen token works once at most: when the thief or the owner
//! presents a retired one, the whole family is revoked, and both must sign in again
//! (RFC 9700, 4.14.2). Only a token's SHA-256 is stored.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use oxcart_db::{self as db, Db};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::Error;

/// An opaque refresh token, as the client holds it.
pub fn new_token() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the table keeps of a token.
pub fn digest(token: &str) -> String {
    let hash = Sha256::digest(token.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// What presenting a refresh token came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// It was current: retired, and the family's next token stored.
    Rotated { family: Uuid, user_id: Uuid },
    /// It had been retired already: the family is revoked.
    Reused { family: Uuid },
    /// Unknown, expired, or its family revoked.
    Invalid,
}

#[derive(Debug, Clone)]
pub struct SessionStore {
    db: Db,
}

impl SessionStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Starts family `family` for `user_id` with its first token.
    pub async fn start(
        &self,
        family: Uuid,
        user_id: Uuid,
        token_hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let mut tx = self.db.begin().await?;
        insert(&mut tx, token_hash, family, user_id, now, expires_at).await?;
        Ok(tx.commit().await?)
    }

    /// Retires the token hashed `presented` and stores `next` in its family, or says why
    /// not. The retiring update is conditional, so two refreshes racing with one token
    /// cannot both succeed: the loser counts as a reuse.
    pub async fn rotate(
        &self,
        presented: &str,
        next: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Rotation, Error> {
        let mut tx = self.db.begin().await?;
        let row = db::query(
            "SELECT family_id, user_id, expires_at, rotated_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(presented)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Rotation::Invalid);
        };
        let corrupt = |what: &str| Error::Corrupt(format!("refresh_tokens.{what}"));
        let family: Uuid = row
            .try_get::<String, _>("family_id")?
            .parse()
            .map_err(|_| corrupt("family_id"))?;
        let user_id: Uuid = row
            .try_get::<String, _>("user_id")?
            .parse()
            .map_err(|_| corrupt("user_id"))?;
        let expires: String = row.try_get("expires_at")?;
        let rotated: Option<String> = row.try_get("rotated_at")?;
        let revoked: Option<String> = row.try_get("revoked_at")?;
        // Timestamps are RFC 3339 in UTC with fixed precision: they compare as text.
        if revoked.is_some() || expires <= db::timestamp(now) {
            return Ok(Rotation::Invalid);
        }
        let retired = rotated.is_none()
            && db::query(
                "UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 AND rotated_at IS NULL",
            )
            .bind(db::timestamp(now))
            .bind(presented)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        if !retired {
            revoke_family(&mut tx, family, now).await?;
            tx.commit().await?;
            return Ok(Rotation::Reused { family });
        }
        insert(&mut tx, next, family, user_id, now, expires_at).await?;
        tx.commit().await?;
        Ok(Rotation::Rotated { family, user_id })
    }

    /// Revokes the family of the token hashed `token_hash`; its id, if there was one.
    pub async fn end(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<Uuid>, Error> {
        let mut tx = self.db.begin().await?;
        let family = db::query("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get::<String, _>("family_id"))
            .transpose()?
            .and_then(|id| id.parse::<Uuid>().ok());
        if let Some(family) = family {
            revoke_family(&mut tx, family, now).await?;
        }
        tx.commit().await?;
        Ok(family)
    }

    /// Revokes every live family of `user_id`, in `tx`; their ids.
    pub async fn end_all(
        tx: &mut db::Tx,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, Error> {
        let families = db::query(
            "SELECT DISTINCT family_id FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id.to_string())
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .filter_map(|row| row.try_get::<String, _>("family_id").ok()?.parse().ok())
        .collect();
        db::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(db::timestamp(now))
        .bind(user_id.to_string())
        .execute(&mut **tx)
        .await?;
        Ok(families)
    }
}

async fn insert(
    tx: &mut db::Tx,
    token_hash: &str,
    family: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), Error> {
    db::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(family.to_string())
    .bind(user_id.to_string())
    .bind(db::timestamp(now))
    .bind(db::timestamp(expires_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn revoke_family(tx: &mut db::Tx, family: Uuid, now: DateTime<Utc>) -> Result<(), Error> {
    db::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(db::timestamp(now))
    .bind(family.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
