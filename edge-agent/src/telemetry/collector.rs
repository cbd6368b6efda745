//! The enterprise's own OpenTelemetry collector, beside the registry: the
//! standard `OTEL_EXPORTER_OTLP_*` settings (or the agent's `otlp_endpoint`,
//! `otlp_ca_cert` and `otlp_headers`) name an OTLP/gRPC endpoint that gets the
//! same metrics and traces.

use std::path::PathBuf;

use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::error::{AgentError, Result};

/// Where the second copy goes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollectorConfig {
    /// `http://host:4317` or `https://host:4317`; empty for none.
    pub endpoint: String,
    /// PEM CA certificates to trust for `https` (else the system's are not
    /// used: name the collector's CA).
    pub ca_cert: Option<PathBuf>,
    /// `key=value,key2=value2`, sent with every export (an API key, a tenant).
    pub headers: String,
}

impl CollectorConfig {
    /// The agent's settings, filled from the standard environment variables
    /// where they are empty.
    pub fn resolve(endpoint: &str, ca_cert: Option<PathBuf>, headers: &str) -> CollectorConfig {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let pick = |own: &str, keys: &[&str]| {
            if own.is_empty() {
                keys.iter().find_map(|k| var(k)).unwrap_or_default()
            } else {
                own.to_owned()
            }
        };
        CollectorConfig {
            endpoint: pick(
                endpoint,
                &[
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                ],
            ),
            ca_cert: ca_cert.or_else(|| var("OTEL_EXPORTER_OTLP_CERTIFICATE").map(PathBuf::from)),
            headers: pick(headers, &["OTEL_EXPORTER_OTLP_HEADERS"]),
        }
    }

    /// The channel and the headers, or `None` when no endpoint is set.
    pub(crate) fn connect(&self) -> Result<Option<(Channel, MetadataMap)>> {
        if self.endpoint.is_empty() {
            return Ok(None);
        }
        let bad = |m: String| AgentError::Config(format!("otlp_endpoint `{}`: {m}", self.endpoint));
        if !self.endpoint.starts_with("http://") && !self.endpoint.starts_with("https://") {
            return Err(bad("must start with http:// or https://".into()));
        }
        let mut ep = Channel::from_shared(self.endpoint.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(10));
        if self.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            match &self.ca_cert {
                Some(p) => {
                    let pem = std::fs::read_to_string(p).map_err(|e| {
                        AgentError::Config(format!("otlp_ca_cert `{}`: {e}", p.display()))
                    })?;
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
                None => {
                    return Err(bad(
                        "https needs the collector's CA: set otlp_ca_cert or OTEL_EXPORTER_OTLP_CERTIFICATE"
                            .into(),
                    ))
                }
            }
            ep = ep.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        }
        Ok(Some((ep.connect_lazy(), parse_headers(&self.headers)?)))
    }
}

/// `key=value` pairs separated by commas (values may be percent-encoded, as
/// the OpenTelemetry specification allows).
fn parse_headers(s: &str) -> Result<MetadataMap> {
    let mut m = MetadataMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            AgentError::Config(format!("otlp_headers: `{pair}` is not key=value"))
        })?;
        let key = MetadataKey::from_bytes(k.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| AgentError::Config(format!("otlp_headers: `{k}` is not a header name")))?;
        let value: MetadataValue<_> = percent_decode(v.trim()).parse().map_err(|_| {
            AgentError::Config(format!(
                "otlp_headers: the value of `{k}` is not a header value"
            ))
        })?;
        m.insert(key, value);
    }
    Ok(m)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_key_value_pairs_and_bad_ones_are_named() {
        let m = parse_headers("api-key=abc%20def, X-Tenant = acme").unwrap();
        assert_eq!(m.get("api-key").unwrap(), "abc def");
        assert_eq!(m.get("x-tenant").unwrap(), "acme");
        let err = parse_headers("novalue").unwrap_err().to_string();
        assert!(err.contains("`novalue` is not key=value"), "{err}");
        let err = parse_headers("bad key=1").unwrap_err().to_string();
        assert!(err.contains("`bad key` is not a header name"), "{err}");
    }

    #[test]
    fn an_endpoint_must_be_http_or_https_with_a_ca() {
        let c = |e: &str| CollectorConfig {
            endpoint: e.into(),
            ..Default::default()
        };
        assert!(c("").connect().unwrap().is_none());
        let err = c("collector:4317").connect().unwrap_err().to_string();
        assert!(err.contains("must start with http:// or https://"), "{err}");
        let err = c("https://collector:4317")
            .connect()
            .unwrap_err()
            .to_string();
        assert!(err.contains("otlp_ca_cert"), "{err}");
    }
}
