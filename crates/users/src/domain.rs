//! What a valid user is. Requests are parsed into these types at the edge; past it, an
//! `Email` is always normalised and a `Password` always within bounds.

use chrono::{DateTime, Utc};
use oxcart_platform::auth::Role;
use oxcart_platform::{FieldError, Validator};
use uuid::Uuid;

/// An e-mail address, trimmed and lower-cased: uniqueness is case-insensitive, and a
/// customer who registered as `Ada@Example.com` can sign in as `ada@example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("must not be empty".into());
        }
        if email.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        // A shop sends mail to these addresses, so the domain must be a public one
        // (`a@localhost` is valid RFC 5322 but undeliverable).
        let deliverable = email.rsplit_once('@').is_some_and(|(_, domain)| {
            domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
        if !email_address::EmailAddress::is_valid(&email) || !deliverable {
            return Err("is not a valid e-mail address".into());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password within length bounds. The upper bound keeps hashing cost bounded.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: String) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(format!("must be at least {} characters", Self::MIN_CHARS));
        }
        if chars > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if raw.trim().is_empty() {
            return Err("must not be only whitespace".into());
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A display name: optional; blank counts as absent.
pub fn parse_name(raw: Option<String>) -> Result<Option<String>, String> {
    const MAX_CHARS: usize = 100;
    match raw.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) {
        Some(name) if name.chars().count() > MAX_CHARS => {
            Err(format!("must be at most {MAX_CHARS} characters"))
        }
        Some(name) if name.chars().any(char::is_control) => {
            Err("must not contain control characters".into())
        }
        name => Ok(name),
    }
}

/// A registration that passed validation.
#[derive(Debug, Clone)]
pub struct Registration {
    pub email: Email,
    pub password: Password,
    pub name: Option<String>,
}

impl Registration {
    /// Validates every field and reports all that are wrong at once.
    pub fn parse(
        email: &str,
        password: String,
        name: Option<String>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut v = Validator::default();
        let email = v.check(&["email"], Email::parse(email));
        let password = v.check(&["password"], Password::parse(password));
        let name = v.check(&["name"], parse_name(name));
        v.finish(|| {
            Some(Self {
                email: email?,
                password: password?,
                name: name?,
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@localhost",
            "a b@example.com",
            "ada@example.com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn passwords_have_bounds_in_characters() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("        ".into()).is_err());
        assert!(Password::parse("ünïcödé!".into()).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
    }

    #[test]
    fn registration_reports_every_bad_field() {
        let errors =
            Registration::parse("nope", "short".into(), Some("x".repeat(101))).unwrap_err();
        let pointers: Vec<_> = errors.iter().filter_map(|e| e.pointer.as_deref()).collect();
        assert_eq!(pointers, ["#/email", "#/password", "#/name"]);
    }

    #[test]
    fn blank_names_are_absent() {
        assert_eq!(parse_name(Some("   ".into())).unwrap(), None);
        assert_eq!(
            parse_name(Some(" Ada ".into())).unwrap().as_deref(),
            Some("Ada")
        );
    }
}
