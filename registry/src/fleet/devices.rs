//! Devices: one-time enrollment tokens, enrollment with a certificate signed
//! by the registry's device CA, authentication by that certificate, listing
//! and revocation, each within the caller's tenant.

use super::*;

impl Registry {
    /// A one-time enrollment token for a device of the enterprise; returned once.
    pub fn create_enrollment(
        &self,
        p: &Principal,
        enterprise: &str,
        labels: Labels,
        ttl_seconds: i64,
    ) -> Result<(Enrollment, String)> {
        let enterprise = self.tenant(p, enterprise)?;
        check_labels("labels", &labels)?;
        if !(0..=crate::limits::text::MAX_TTL_SECONDS).contains(&ttl_seconds) {
            return Err(RegistryError::invalid(
                "ttl_seconds",
                format!(
                    "{ttl_seconds} is not between 0 and {} (ten years)",
                    crate::limits::text::MAX_TTL_SECONDS
                ),
            ));
        }
        let id = random_hex(6);
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let secret = hex::encode(secret);
        let now = self.clock.now_unix();
        let e = Enrollment {
            id: id.clone(),
            hash: hash_secret(&secret),
            enterprise,
            labels,
            expires_unix: now
                + if ttl_seconds == 0 {
                    ENROLLMENT_TTL
                } else {
                    ttl_seconds
                },
            used_by: String::new(),
            created_unix: now,
        };
        self.insert_new(Tree::Enrollments, &id, json(&e), "enrollment")?;
        Ok((e, format!("abe_{id}_{secret}")))
    }

    /// A device presents its enrollment token once, with a signing request for
    /// its own key; it gets a client certificate from the registry's device CA.
    pub fn enroll(
        &self,
        token: &str,
        csr_pem: &str,
        name: &str,
        labels: Labels,
    ) -> Result<(Device, String, String)> {
        let ca = self.device_ca.as_ref().ok_or_else(|| {
            RegistryError::FailedPrecondition(
                "this registry has no device CA (it serves without TLS)".into(),
            )
        })?;
        let (id, secret) = token
            .strip_prefix("abe_")
            .and_then(|r| r.split_once('_'))
            .ok_or_else(|| {
                RegistryError::Unauthenticated(
                    "malformed enrollment token: it must look like `abe_<id>_<secret>`".into(),
                )
            })?;
        let old = self
            .kv
            .get(Tree::Enrollments, id.as_bytes())?
            .ok_or_else(|| RegistryError::Unauthenticated("unknown enrollment token".into()))?;
        let mut e: Enrollment = parse("enrollment", &old)?;
        if hash_secret(secret) != e.hash {
            return Err(RegistryError::Unauthenticated(
                "unknown enrollment token".into(),
            ));
        }
        if !e.used_by.is_empty() {
            return Err(RegistryError::Unauthenticated(format!(
                "enrollment token {id} was already used by device {}",
                e.used_by
            )));
        }
        let now = self.clock.now_unix();
        if now >= e.expires_unix {
            return Err(RegistryError::Unauthenticated(format!(
                "enrollment token {id} expired"
            )));
        }
        check_labels("labels", &labels)?;
        let name = if name.is_empty() { "device" } else { name };
        if name.len() > 128 || name.chars().any(char::is_control) {
            return Err(RegistryError::invalid(
                "name",
                "must be at most 128 printable characters",
            ));
        }
        let device_id = format!("dev-{}", random_hex(6));
        let cert = ca.issue(csr_pem, &device_id)?;
        let der = crate::tls::pem_to_der(&cert)
            .ok_or_else(|| RegistryError::Storage("issued certificate is not PEM".into()))?;
        let fingerprint = crate::tls::der_fingerprint(&der);
        let mut all = labels;
        all.extend(e.labels.clone());
        let device = Device {
            id: device_id.clone(),
            enterprise: e.enterprise.clone(),
            name: name.to_owned(),
            labels: all,
            fingerprint: fingerprint.clone(),
            enrolled_unix: now,
            last_seen_unix: now,
            revoked: false,
            state: DeviceState::default(),
        };
        e.used_by = device_id;
        let committed = self.kv.commit(
            Batch::new()
                .check(Tree::Enrollments, id.as_bytes(), Some(old))
                .put(Tree::Enrollments, id.as_bytes(), json(&e))
                .check(Tree::Devices, device.key(), None)
                .put(Tree::Devices, device.key(), json(&device))
                .put(Tree::DeviceCerts, fingerprint, device.key())
                .note(self.note_desired()),
        )?;
        if !committed {
            return Err(RegistryError::Unauthenticated(format!(
                "enrollment token {id} was already used"
            )));
        }
        self.wake();
        Ok((device, cert, ca.cert_pem().to_owned()))
    }

    pub(super) fn device_by_key(&self, key: &[u8]) -> Result<Option<Device>> {
        self.kv
            .get(Tree::Devices, key)?
            .map(|v| parse("device", &v))
            .transpose()
    }

    /// Resolves a client certificate (its sha256) to the device that holds it.
    pub fn authenticate_device(&self, fingerprint: &str) -> Result<Principal> {
        let key = self
            .kv
            .get(Tree::DeviceCerts, fingerprint.as_bytes())?
            .ok_or_else(|| {
                RegistryError::Unauthenticated(
                    "this client certificate belongs to no enrolled device".into(),
                )
            })?;
        let d = self
            .device_by_key(&key)?
            .ok_or_else(|| RegistryError::Unauthenticated("device record is gone".into()))?;
        if d.revoked {
            return Err(RegistryError::Unauthenticated(format!(
                "device {} was revoked",
                d.id
            )));
        }
        Ok(Principal {
            role: Role::Device,
            subject: d.enterprise,
            token_id: d.id,
        })
    }

    /// The devices of an enterprise.
    pub fn list_devices(&self, p: &Principal, enterprise: &str) -> Result<Vec<Device>> {
        let e = self.tenant(p, enterprise)?;
        let mut out: Vec<Device> = self
            .kv
            .scan_prefix(Tree::Devices, format!("{e}/").as_bytes())?
            .iter()
            .map(|(_, v)| parse("device", v))
            .collect::<Result<_>>()?;
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for d in &mut out {
            if let Some(t) = seen.get(&d.id) {
                d.last_seen_unix = d.last_seen_unix.max(*t);
            }
        }
        Ok(out)
    }

    fn find_device(&self, p: &Principal, id: &str) -> Result<Device> {
        let e = self.tenant(p, "").or_else(|err| match p.role {
            // An operator names no enterprise here: look the device up anywhere.
            Role::Operator => Ok(String::new()),
            _ => Err(err),
        })?;
        let prefix = if e.is_empty() {
            String::new()
        } else {
            format!("{e}/")
        };
        for (_, v) in self.kv.scan_prefix(Tree::Devices, prefix.as_bytes())? {
            let d: Device = parse("device", &v)?;
            if d.id == id {
                return Ok(d);
            }
        }
        Err(RegistryError::NotFound(format!("device `{id}`")))
    }

    /// Cuts a device off: its certificate is refused from now on.
    pub fn revoke_device(&self, p: &Principal, id: &str) -> Result<Device> {
        let mut d = self.find_device(p, id)?;
        let old = json(&d);
        d.revoked = true;
        if !self.kv.commit(
            Batch::new()
                .check(Tree::Devices, d.key(), Some(old))
                .put(Tree::Devices, d.key(), json(&d))
                .note(self.note_desired()),
        )? {
            return Err(RegistryError::FailedPrecondition(format!(
                "device {id} changed meanwhile; try again"
            )));
        }
        self.wake();
        Ok(d)
    }

    pub(crate) fn device_for(&self, p: &Principal) -> Result<Device> {
        if p.role != Role::Device {
            return Err(RegistryError::PermissionDenied(
                "only an enrolled device syncs (over mTLS with its certificate)".into(),
            ));
        }
        self.device_by_key(format!("{}/{}", p.subject, p.token_id).as_bytes())?
            .ok_or_else(|| RegistryError::NotFound(format!("device `{}`", p.token_id)))
    }
}
