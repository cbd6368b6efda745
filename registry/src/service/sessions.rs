//! The web console's signed-in sessions: an API token is exchanged once for
//! a random session secret (sent back as a cookie), stored only hashed, with
//! its own anti-forgery token. A session lives at most [`SESSION_TTL`] and
//! never past its token; every use checks the token again, so revoking the
//! token ends its sessions.

use serde::{Deserialize, Serialize};

use super::*;

/// How long a session lasts.
pub const SESSION_TTL: i64 = 12 * 3600;

/// A session as stored under the hash of its secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SessionRecord {
    token_id: String,
    csrf: String,
    created_unix: i64,
    expires_unix: i64,
}

/// A signed-in session: who it acts for and the token its forms must carry.
#[derive(Clone, Debug)]
pub struct WebSession {
    pub principal: Principal,
    /// Every form posted in this session carries it.
    pub csrf: String,
    pub expires_unix: i64,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn well_formed(secret: &str) -> bool {
    secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Registry {
    /// Exchanges an API token for a session; returns the session's secret once.
    pub fn sign_in(&self, token: &str) -> Result<(String, WebSession)> {
        let principal = self.authenticate(Some(token.trim()))?;
        let rec: TokenRecord = self
            .kv
            .get(Tree::Tokens, principal.token_id.as_bytes())?
            .map(|v| parse("token", &v))
            .transpose()?
            .ok_or_else(|| RegistryError::Unauthenticated("unknown token".into()))?;
        let now = self.clock.now_unix();
        let mut expires = now + SESSION_TTL;
        if rec.expires_unix != 0 {
            expires = expires.min(rec.expires_unix);
        }
        let secret = random_hex(32);
        let session = SessionRecord {
            token_id: principal.token_id.clone(),
            csrf: random_hex(16),
            created_unix: now,
            expires_unix: expires,
        };
        self.insert_new(
            Tree::Sessions,
            &hash_secret(&secret),
            json(&session),
            "session",
        )?;
        Ok((
            secret,
            WebSession {
                principal,
                csrf: session.csrf,
                expires_unix: expires,
            },
        ))
    }

    /// The session of a secret, if it is still good (and its token too).
    pub fn session(&self, secret: &str) -> Result<WebSession> {
        if !well_formed(secret) {
            return Err(RegistryError::Unauthenticated(
                "malformed session: sign in again".into(),
            ));
        }
        let key = hash_secret(secret);
        let ended = |why: &str| -> Result<WebSession> {
            self.kv
                .commit(Batch::new().delete(Tree::Sessions, key.as_bytes()))?;
            Err(RegistryError::Unauthenticated(format!(
                "{why}: sign in again"
            )))
        };
        let Some(v) = self.kv.get(Tree::Sessions, key.as_bytes())? else {
            return Err(RegistryError::Unauthenticated(
                "no such session: sign in again".into(),
            ));
        };
        let s: SessionRecord = parse("session", &v)?;
        let now = self.clock.now_unix();
        if now >= s.expires_unix {
            return ended("the session expired");
        }
        let Some(t) = self.kv.get(Tree::Tokens, s.token_id.as_bytes())? else {
            return ended("the session's token is gone");
        };
        let t: TokenRecord = parse("token", &t)?;
        if t.revoked {
            return ended(&format!("token {} was revoked", t.id));
        }
        if t.expires_unix != 0 && now >= t.expires_unix {
            return ended(&format!("token {} expired", t.id));
        }
        Ok(WebSession {
            principal: Principal {
                role: t.role,
                subject: t.subject,
                token_id: t.id,
            },
            csrf: s.csrf,
            expires_unix: s.expires_unix,
        })
    }

    /// Ends a session (nothing happens for one already gone).
    pub fn sign_out(&self, secret: &str) -> Result<()> {
        if well_formed(secret) {
            self.kv
                .commit(Batch::new().delete(Tree::Sessions, hash_secret(secret).as_bytes()))?;
        }
        Ok(())
    }
}
