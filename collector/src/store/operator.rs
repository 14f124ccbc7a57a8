//! Operator tokens: the bearer tokens of the HTTP API. Only a token's
//! SHA-256 is stored; a token is listed by its id and name, never shown
//! again after `operator-token create` printed it.

use super::*;

/// An operator token as stored and listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct OperatorToken {
    /// Its id, for `operator-token revoke ID`.
    pub id: i64,
    /// The operator it speaks for: logged with every request it makes.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None`: it never expires (until revoked).
    pub expires_at: Option<i64>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// When it was last accepted (to the minute).
    pub last_used_at: Option<i64>,
}

/// What a presented bearer token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorAuth {
    /// Good: the request speaks for this operator.
    Valid(OperatorToken),
    /// No such token.
    Unknown,
    /// Past its expiry.
    Expired(OperatorToken),
    /// Revoked by `operator-token revoke`.
    Revoked(OperatorToken),
}

/// What `create_operator_token` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCreated {
    /// Stored.
    Created(OperatorToken),
    /// A token of that name is not revoked yet: nothing was stored.
    NameTaken {
        /// The existing token's id.
        id: i64,
    },
}

/// What `revoke_operator_token` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRevoked {
    /// Revoked now.
    Revoked(OperatorToken),
    /// It was revoked before (nothing changed).
    Already(OperatorToken),
    /// No token of that name (not revoked) or id.
    NotFound,
}

/// How often at most `last_used_at` is written for one token, in seconds:
/// a console polling the API must not turn every read into a write.
pub const LAST_USED_RESOLUTION: i64 = 60;

/// Checks an operator token's name: 1 to 64 letters, digits, `.`, `_`,
/// `-` or `@`, with at least one that is not a digit (so a name is never
/// mistaken for an id).
pub fn check_operator_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("the name {name:?} must be 1 to 64 characters long"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Err(format!(
            "the name {name:?} holds {c:?}: use letters, digits, '.', '_', '-' or '@'"
        ));
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "the name {name:?} is all digits, which reads as a token id: add a letter"
        ));
    }
    Ok(())
}

const COLUMNS: &str = "id, name, created_at, expires_at, revoked_at, last_used_at";

impl Store {
    /// Stores a new operator token by its hash; refused when a token of
    /// that name is not revoked.
    pub async fn create_operator_token(
        &self,
        name: &str,
        token_hash: &str,
        expires_at: Option<i64>,
    ) -> Result<TokenCreated, StoreError> {
        on_pool!(self, |pool| {
            // The partial unique index on active names decides, so two
            // collectors creating the same name at once cannot both win.
            let row: Option<OperatorToken> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO operator_tokens (name, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
            )))
            .bind(name)
            .bind(token_hash)
            .bind(now())
            .bind(expires_at)
            .fetch_optional(pool)
            .await?;
            if let Some(t) = row {
                return Ok(TokenCreated::Created(t));
            }
            let id: i64 = sqlx::query_scalar(
                "SELECT id FROM operator_tokens WHERE name = $1 AND revoked_at IS NULL",
            )
            .bind(name)
            .fetch_optional(pool)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "operator token {name:?} was refused but no token holds that name"
                ))
            })?;
            Ok(TokenCreated::NameTaken { id })
        })
    }

    /// Every operator token, oldest first.
    pub async fn operator_tokens(&self) -> Result<Vec<OperatorToken>, StoreError> {
        on_pool!(self, |pool| {
            let rows: Vec<OperatorToken> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM operator_tokens ORDER BY id"
            )))
            .fetch_all(pool)
            .await?;
            Ok(rows)
        })
    }

    /// Revokes the token named `which` (among those not revoked) or, when
    /// no token has that name, the token whose id it is.
    pub async fn revoke_operator_token(&self, which: &str) -> Result<TokenRevoked, StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let mut token: Option<OperatorToken> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM operator_tokens WHERE name = $1 AND revoked_at IS NULL"
            )))
            .bind(which)
            .fetch_optional(&mut *tx)
            .await?;
            if token.is_none()
                && let Ok(id) = which.parse::<i64>()
            {
                token = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM operator_tokens WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            }
            let Some(mut token) = token else {
                return Ok(TokenRevoked::NotFound);
            };
            if token.revoked_at.is_some() {
                return Ok(TokenRevoked::Already(token));
            }
            let t = now();
            sqlx::query(
                "UPDATE operator_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(t)
            .bind(token.id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            token.revoked_at = Some(t);
            Ok(TokenRevoked::Revoked(token))
        })
    }

    /// What the token with this hash is, as of `at` (Unix seconds).
    pub async fn operator_auth(
        &self,
        token_hash: &str,
        at: i64,
    ) -> Result<OperatorAuth, StoreError> {
        on_pool!(self, |pool| {
            let row: Option<OperatorToken> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM operator_tokens WHERE token_hash = $1"
            )))
            .bind(token_hash)
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                None => OperatorAuth::Unknown,
                Some(t) if t.revoked_at.is_some() => OperatorAuth::Revoked(t),
                Some(t) if t.expires_at.is_some_and(|e| e <= at) => OperatorAuth::Expired(t),
                Some(t) => OperatorAuth::Valid(t),
            })
        })
    }

    /// Records that token `id` was used at `at`, unless that was already
    /// recorded less than [`LAST_USED_RESOLUTION`] before.
    pub async fn operator_token_used(&self, id: i64, at: i64) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE operator_tokens SET last_used_at = $1 WHERE id = $2 \
                 AND (last_used_at IS NULL OR last_used_at <= $3)",
            )
            .bind(at)
            .bind(id)
            .bind(at - LAST_USED_RESOLUTION)
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}

/// What a console session cookie is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAuth {
    /// Good: the session speaks for this token's operator.
    Valid(OperatorToken),
    /// No such session (never made, signed out, or purged).
    Unknown,
    /// The session, or its token, expired, or the token was revoked.
    Ended,
}

/// A session and its token, as read.
#[derive(sqlx::FromRow)]
struct SessionRow {
    ends: i64,
    #[sqlx(flatten)]
    token: OperatorToken,
}

impl Store {
    /// Stores a console session for token `token_id`, known by the hash
    /// of its secret, until `expires_at`; drops sessions that have ended.
    pub async fn create_console_session(
        &self,
        session_hash: &str,
        token_id: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let t = now();
        on_pool!(self, |pool| {
            sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
                .bind(t)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO console_sessions (session_hash, token_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(session_hash)
            .bind(token_id)
            .bind(t)
            .bind(expires_at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// What the session with this hash is, as of `at`: valid only while
    /// the session and its token are both unexpired and the token is not
    /// revoked.
    pub async fn console_session(
        &self,
        session_hash: &str,
        at: i64,
    ) -> Result<SessionAuth, StoreError> {
        on_pool!(self, |pool| {
            let row: Option<SessionRow> = sqlx::query_as(
                "SELECT s.expires_at AS ends, t.id, t.name, t.created_at, t.expires_at, t.revoked_at, \
                 t.last_used_at FROM console_sessions s \
                 JOIN operator_tokens t ON t.id = s.token_id WHERE s.session_hash = $1",
            )
            .bind(session_hash)
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                None => SessionAuth::Unknown,
                Some(SessionRow { ends, token })
                    if ends <= at
                        || token.revoked_at.is_some()
                        || token.expires_at.is_some_and(|e| e <= at) =>
                {
                    SessionAuth::Ended
                }
                Some(SessionRow { token, .. }) => SessionAuth::Valid(token),
            })
        })
    }

    /// Ends the session with this hash (sign-out); `false` when there was
    /// none.
    pub async fn end_console_session(&self, session_hash: &str) -> Result<bool, StoreError> {
        on_pool!(self, |pool| {
            let r = sqlx::query("DELETE FROM console_sessions WHERE session_hash = $1")
                .bind(session_hash)
                .execute(pool)
                .await?;
            Ok(r.rows_affected() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_operator_name("console").is_ok());
        assert!(check_operator_name("alice@soc.example-1_2").is_ok());
        assert!(check_operator_name("2fa").is_ok());
        assert!(check_operator_name("").unwrap_err().contains("1 to 64"));
        assert!(check_operator_name(&"a".repeat(65)).is_err());
        assert!(check_operator_name("a b").unwrap_err().contains("' '"));
        assert!(check_operator_name("12").unwrap_err().contains("id"));
    }
}
