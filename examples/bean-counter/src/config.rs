//! The optional configuration file named by `CONFIG_PATH`. In the sidecar
//! assembly an init container copies it from S3 into a volume the service
//! mounts; the service reads it once at start and says what it found, so
//! the hand-over is visible in the service's own log.

use serde::Deserialize;

/// What the configuration file says. Unknown fields are ignored, so a
/// newer file does not stop an older service.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Config {
    /// A name for this deployment, shown in the start-up line.
    pub label: Option<String>,
    /// The currency the deployment is meant for (totals are always US coins).
    pub currency: Option<String>,
}

impl Config {
    /// Reads and parses the file at `path`; the error names the file.
    pub fn load(path: &str) -> Result<Config, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("reading configuration {path}: {e}"))?;
        Self::parse(&bytes).map_err(|e| format!("configuration {path}: {e}"))
    }

    /// Parses a configuration: a JSON object.
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON configuration object: {e}"))
    }

    /// The start-up line's account of the file, e.g. `label "Hail demo", currency USD`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(label) = &self.label {
            parts.push(format!("label {label:?}"));
        }
        if let Some(currency) = &self.currency {
            parts.push(format!("currency {currency}"));
        }
        if parts.is_empty() {
            "no known fields".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_known_fields_and_ignores_others() {
        let c = Config::parse(br#"{"label": "Hail demo", "currency": "USD", "extra": 1}"#).unwrap();
        assert_eq!(c.label.as_deref(), Some("Hail demo"));
        assert_eq!(c.summary(), r#"label "Hail demo", currency USD"#);
        assert_eq!(Config::parse(b"{}").unwrap().summary(), "no known fields");
    }

    #[test]
    fn refuses_what_is_not_a_json_object() {
        let e = Config::parse(b"label = demo").unwrap_err();
        assert!(e.starts_with("not a JSON configuration object"), "{e}");
        assert!(Config::parse(b"[1]").is_err());
        let e = Config::load("/nonexistent/app.json").unwrap_err();
        assert!(
            e.starts_with("reading configuration /nonexistent/app.json: "),
            "{e}"
        );
    }
}
