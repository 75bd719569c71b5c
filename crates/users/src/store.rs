//! The `users` table.

use oxcart_db::{self as db, Db};
use oxcart_platform::auth::Role;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::Error;
use crate::domain::User;

const COLUMNS: &str = "id, email, name, role, created_at, password_hash";

#[derive(Debug, Clone)]
pub struct UserStore {
    db: Db,
}

impl UserStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Inserts a user; a taken e-mail is [`Error::EmailTaken`], caught by the unique
    /// constraint rather than a prior look-up, so two racing registrations cannot both win.
    pub async fn insert(&self, user: &User, password_hash: &str) -> Result<(), Error> {
        let mut tx = self.db.begin().await?;
        let result = db::query(
            "INSERT INTO users (id, email, name, role, created_at, password_hash) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id.to_string())
        .bind(&user.email)
        .bind(user.name.clone())
        .bind(user.role.as_str())
        .bind(db::timestamp(user.created_at))
        .bind(password_hash)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => Ok(tx.commit().await?),
            Err(e) if db::is_unique_violation(&e) => {
                // Returns once whatever took it is durable (see `db::group`).
                tx.rollback().await?;
                Err(Error::EmailTaken)
            }
            Err(e) => Err(Error::Storage(e)),
        }
    }

    /// The user with `email` (already normalised) and their password hash. Account
    /// look-ups read the primary: signing in right after signing up must work whatever
    /// a replica's lag.
    pub async fn by_email(&self, email: &str) -> Result<Option<(User, String)>, Error> {
        self.with_hash("email", email.to_owned()).await
    }

    /// The user `id` and their password hash, from the primary.
    pub async fn by_id_with_hash(&self, id: Uuid) -> Result<Option<(User, String)>, Error> {
        self.with_hash("id", id.to_string()).await
    }

    async fn with_hash(
        &self,
        column: &str,
        value: String,
    ) -> Result<Option<(User, String)>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE {column} = $1");
        let row = db::query(&sql)
            .bind(value)
            .fetch_optional(&mut *self.db.read_primary().await?)
            .await?;
        row.map(|row| Ok((decode(&row)?, row.try_get("password_hash")?)))
            .transpose()
    }

    /// Replaces `id`'s password hash, in `tx`.
    pub async fn set_password(tx: &mut db::Tx, id: Uuid, password_hash: &str) -> Result<(), Error> {
        db::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn by_id(&self, id: Uuid) -> Result<Option<User>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
        let row = db::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&mut *self.db.read_primary().await?)
            .await?;
        row.as_ref().map(decode).transpose()
    }
}

fn decode(row: &AnyRow) -> Result<User, Error> {
    let corrupt = |what: &str| Error::Corrupt(what.to_owned());
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row
            .try_get::<String, _>("id")?
            .parse()
            .map_err(|_| corrupt("id"))?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role"))?,
        created_at: db::parse_timestamp(&row.try_get::<String, _>("created_at")?)
            .map_err(|_| corrupt("created_at"))?,
    })
}
