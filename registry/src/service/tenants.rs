//! Tokens, teams and enterprises.

use super::*;

impl Registry {
    // ------------------------------------------------------------ tokens

    fn mint(
        &self,
        role: Role,
        subject: &str,
        ttl_seconds: i64,
        description: &str,
    ) -> Result<(TokenRecord, String)> {
        let (rec, token) = self.new_token(role, subject, ttl_seconds, description);
        self.insert_new(Tree::Tokens, &rec.id, json(&rec), "token")?;
        Ok((rec, token))
    }

    /// A fresh token and its record, not stored yet.
    fn new_token(
        &self,
        role: Role,
        subject: &str,
        ttl_seconds: i64,
        description: &str,
    ) -> (TokenRecord, String) {
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut id);
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let id = hex::encode(id);
        let secret = B64.encode(secret);
        let now = self.clock.now_unix();
        let rec = TokenRecord {
            id: id.clone(),
            hash: hash_secret(&secret),
            role,
            subject: subject.to_owned(),
            expires_unix: if ttl_seconds > 0 {
                now.saturating_add(ttl_seconds)
            } else {
                0
            },
            revoked: false,
            description: description.to_owned(),
            created_unix: now,
        };
        (rec, format!("abt_{id}_{secret}"))
    }

    /// Creates the first operator token if there is no operator yet; returns it, once.
    pub fn bootstrap_operator(&self) -> Result<Option<String>> {
        let any_operator = self
            .kv
            .scan_prefix(Tree::Tokens, b"")?
            .iter()
            .any(|(_, v)| {
                parse::<TokenRecord>("token", v)
                    .is_ok_and(|t| t.role == Role::Operator && !t.revoked)
            });
        if any_operator {
            return Ok(None);
        }
        // Replicas starting together: the one whose batch moves the marker first mints it.
        let marker = self.kv.get(Tree::Counters, b"operator-bootstrap")?;
        let (rec, token) = self.new_token(Role::Operator, "", 0, "created at first start");
        let made = self.kv.commit(
            Batch::new()
                .check(Tree::Counters, &b"operator-bootstrap"[..], marker)
                .put(
                    Tree::Counters,
                    &b"operator-bootstrap"[..],
                    rec.id.as_bytes(),
                )
                .check(Tree::Tokens, rec.id.as_bytes(), None)
                .put(Tree::Tokens, rec.id.as_bytes(), json(&rec)),
        )?;
        Ok(made.then_some(token))
    }

    /// Resolves a bearer token to its principal.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Principal> {
        let token = token.ok_or_else(|| {
            RegistryError::Unauthenticated("no token: send `authorization: Bearer <token>`".into())
        })?;
        let rest = token.strip_prefix("abt_").ok_or_else(|| {
            RegistryError::Unauthenticated("malformed token: it must start with `abt_`".into())
        })?;
        let (id, secret) = rest
            .split_once('_')
            .ok_or_else(|| RegistryError::Unauthenticated("malformed token".into()))?;
        let rec: TokenRecord = match self.kv.get(Tree::Tokens, id.as_bytes())? {
            Some(v) => parse("token", &v)?,
            None => return Err(RegistryError::Unauthenticated("unknown token".into())),
        };
        let given = hash_secret(secret);
        let same = given.len() == rec.hash.len()
            && given
                .bytes()
                .zip(rec.hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(RegistryError::Unauthenticated("unknown token".into()));
        }
        if rec.revoked {
            return Err(RegistryError::Unauthenticated(format!(
                "token {id} was revoked"
            )));
        }
        if rec.expires_unix != 0 && self.clock.now_unix() >= rec.expires_unix {
            return Err(RegistryError::Unauthenticated(format!(
                "token {id} expired"
            )));
        }
        Ok(Principal {
            role: rec.role,
            subject: rec.subject,
            token_id: rec.id,
        })
    }

    fn operator(p: &Principal) -> Result<()> {
        if p.role != Role::Operator {
            return Err(RegistryError::PermissionDenied(
                "only an operator may do this".into(),
            ));
        }
        Ok(())
    }

    /// Operator only: a token for a team, an enterprise or an operator.
    pub fn create_token(
        &self,
        p: &Principal,
        role: Role,
        subject: &str,
        ttl_seconds: i64,
        description: &str,
    ) -> Result<(TokenRecord, String)> {
        Self::operator(p)?;
        if !(0..=text::MAX_TTL_SECONDS).contains(&ttl_seconds) {
            return Err(RegistryError::invalid(
                "ttl_seconds",
                format!(
                    "{ttl_seconds} is not between 0 (no expiry) and {} (ten years)",
                    text::MAX_TTL_SECONDS
                ),
            ));
        }
        check_len("description", description, text::DESCRIPTION)?;
        match role {
            Role::Operator if !subject.is_empty() => {
                return Err(RegistryError::invalid(
                    "subject",
                    "operator tokens have no subject",
                ))
            }
            Role::Team if self.team(subject)?.is_none() => {
                return Err(RegistryError::NotFound(format!(
                    "team `{}`",
                    shown(subject)
                )))
            }
            Role::Enterprise
                if self
                    .kv
                    .get(Tree::Enterprises, subject.as_bytes())?
                    .is_none() =>
            {
                return Err(RegistryError::NotFound(format!(
                    "enterprise `{}`",
                    shown(subject)
                )))
            }
            _ => {}
        }
        self.mint(role, subject, ttl_seconds, description)
    }

    /// Operator only.
    pub fn revoke_token(&self, p: &Principal, id: &str) -> Result<()> {
        Self::operator(p)?;
        let old = self
            .kv
            .get(Tree::Tokens, id.as_bytes())?
            .ok_or_else(|| RegistryError::NotFound(format!("token {id}")))?;
        let mut rec: TokenRecord = parse("token", &old)?;
        rec.revoked = true;
        if !self.kv.commit(
            Batch::new()
                .check(Tree::Tokens, id.as_bytes(), Some(old))
                .put(Tree::Tokens, id.as_bytes(), json(&rec)),
        )? {
            return Err(RegistryError::FailedPrecondition(format!(
                "token {id} changed meanwhile; try again"
            )));
        }
        Ok(())
    }

    // ------------------------------------------------------------ tenants

    /// Operator only: registers a team and the key it signs kits with.
    pub fn create_team(
        &self,
        p: &Principal,
        name: &str,
        display_name: &str,
        signing_key: &str,
    ) -> Result<Team> {
        Self::operator(p)?;
        check_simple_name("name", name)?;
        check_len("display_name", display_name, text::DISPLAY_NAME)?;
        signing_key
            .parse::<PublicKey>()
            .map_err(|e| RegistryError::invalid("signing_key", e.to_string()))?;
        let team = Team {
            name: name.into(),
            display_name: display_name.into(),
            signing_key: signing_key.into(),
            created_unix: self.clock.now_unix(),
        };
        if !self
            .kv
            .commit(Batch::new().check(Tree::Teams, name.as_bytes(), None).put(
                Tree::Teams,
                name.as_bytes(),
                json(&team),
            ))?
        {
            let existing = self
                .team(name)?
                .ok_or_else(|| RegistryError::Storage("team vanished".into()))?;
            if existing.signing_key == team.signing_key
                && existing.display_name == team.display_name
            {
                return Ok(existing);
            }
            return Err(RegistryError::AlreadyExists(format!("team `{name}`")));
        }
        Ok(team)
    }

    pub fn team(&self, name: &str) -> Result<Option<Team>> {
        self.kv
            .get(Tree::Teams, name.as_bytes())?
            .map(|v| parse("team", &v))
            .transpose()
    }

    /// Operator only.
    pub fn create_enterprise(
        &self,
        p: &Principal,
        name: &str,
        display_name: &str,
        industries: Vec<String>,
    ) -> Result<Enterprise> {
        Self::operator(p)?;
        check_simple_name("name", name)?;
        check_len("display_name", display_name, text::DISPLAY_NAME)?;
        check_list("industries", &industries)?;
        let e = Enterprise {
            name: name.into(),
            display_name: display_name.into(),
            industries,
            created_unix: self.clock.now_unix(),
        };
        if !self.kv.commit(
            Batch::new()
                .check(Tree::Enterprises, name.as_bytes(), None)
                .put(Tree::Enterprises, name.as_bytes(), json(&e)),
        )? {
            return Err(RegistryError::AlreadyExists(format!("enterprise `{name}`")));
        }
        Ok(e)
    }
}
