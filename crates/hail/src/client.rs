//! A client of Hail's AWS JSON 1.1 APIs, signed with SigV4: what the `hail`
//! subcommands that talk to a server (and `hail bench run-task`) use.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use hail_api::sign::Signer;
use hail_api::Service;
use serde_json::Value;

/// An error the API answered with, in AWS's shape.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{code}: {message}")]
    Api { code: String, message: String },
    #[error("{0}")]
    Transport(String),
}

impl ClientError {
    /// The AWS error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            ClientError::Transport(_) => None,
        }
    }
}

/// How long to wait for the server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Every operation the CLI calls answers from the store; a minute without an
/// answer means the server is stuck, and the command should say so.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where to connect and as whom, from the environment the way the AWS tools
/// read it (`None` credentials: use the data directory's).
#[derive(Debug, PartialEq, Eq)]
struct Settings {
    endpoint: String,
    region: String,
    credentials: Option<(String, String)>,
}

impl Settings {
    fn resolve(
        env: impl Fn(&str) -> Option<String>,
        endpoint: Option<&str>,
    ) -> anyhow::Result<Settings> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let endpoint = endpoint
            .map(str::to_owned)
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| crate::server_cmd::DEFAULT_ENDPOINT.to_owned());
        // AWS_REGION first, as the SDKs and aws CLI v2 read them.
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| hail_model::arn::Scope::default().region);
        // Half a key pair is a mistake to report, not a reason to sign
        // silently as someone else (botocore refuses it the same way).
        let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => Some((key, secret)),
            (None, None) => None,
            (Some(_), None) => bail!("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
            (None, Some(_)) => bail!("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"),
        };
        Ok(Settings {
            endpoint,
            region,
            credentials,
        })
    }
}

pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    access_key_id: String,
    secret_access_key: String,
    region: String,
}

impl Client {
    /// The server at `endpoint`, with the root credentials of `data_dir`.
    pub fn for_data_dir(data_dir: &Path, endpoint: &str) -> anyhow::Result<Client> {
        let creds = crate::server_cmd::load_credentials(data_dir)?.with_context(|| {
            format!(
                "{} has no credentials: start `hail server --data-dir {}` once",
                data_dir.display(),
                data_dir.display()
            )
        })?;
        Client::new(
            endpoint,
            &creds.access_key_id,
            &creds.secret_access_key,
            &hail_model::arn::Scope::default().region,
        )
    }

    /// As the AWS tools would connect: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`
    /// and `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`/`AWS_DEFAULT_REGION` from the
    /// environment, falling back to the data dir's credentials and
    /// `http://127.0.0.1:4566`. `endpoint` (a flag) wins over the environment.
    pub fn from_env(data_dir: &Path, endpoint: Option<&str>) -> anyhow::Result<Client> {
        let env = |name: &str| std::env::var(name).ok();
        let settings = Settings::resolve(env, endpoint)?;
        let (key, secret) = match settings.credentials {
            Some(pair) => pair,
            None => {
                let creds = crate::server_cmd::load_credentials(data_dir)?.with_context(|| {
                    format!(
                        "no credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set \
                         and {} has none (start `hail server --data-dir {}` once, or pass \
                         --data-dir)",
                        data_dir.display(),
                        data_dir.display()
                    )
                })?;
                (creds.access_key_id, creds.secret_access_key)
            }
        };
        Client::new(&settings.endpoint, &key, &secret, &settings.region)
    }

    fn new(endpoint: &str, key: &str, secret: &str, region: &str) -> anyhow::Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .build()
                .context("build the HTTP client")?,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            access_key_id: key.to_owned(),
            secret_access_key: secret.to_owned(),
            region: region.to_owned(),
        })
    }

    /// The server this client calls.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One signed S3 REST request (path style): its status and body.
    pub async fn s3(
        &self,
        method: http::Method,
        path: &str,
        body: bytes::Bytes,
    ) -> Result<(http::StatusCode, bytes::Bytes), ClientError> {
        let uri: http::Uri = format!("{}{path}", self.endpoint)
            .parse()
            .map_err(|e| ClientError::Transport(format!("{path}: {e}")))?;
        let mut headers = http::HeaderMap::new();
        Signer {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            region: self.region.clone(),
            service: Service::S3.signing_name().to_owned(),
        }
        .sign(&method, &uri, &mut headers, &body, SystemTime::now())
        .map_err(|e| ClientError::Transport(e.to_string()))?;
        let response = self
            .http
            .request(method, uri.to_string())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| ClientError::Transport(error_chain(&e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(error_chain(&e)))?;
        Ok((status, bytes))
    }

    /// Calls `op` of `service` with `body`; the answer's JSON, or the API's error.
    pub async fn call(
        &self,
        service: Service,
        op: &str,
        body: Value,
    ) -> Result<Value, ClientError> {
        let prefix = service
            .target_prefix()
            .ok_or_else(|| ClientError::Transport(format!("{service:?} is not a JSON API")))?;
        let uri: http::Uri = format!("{}/", self.endpoint)
            .parse()
            .map_err(|e| ClientError::Transport(format!("endpoint {}: {e}", self.endpoint)))?;
        let payload =
            serde_json::to_vec(&body).map_err(|e| ClientError::Transport(e.to_string()))?;
        let mut headers = http::HeaderMap::new();
        let target = format!("{prefix}.{op}");
        headers.insert(
            "x-amz-target",
            http::HeaderValue::from_str(&target)
                .map_err(|e| ClientError::Transport(e.to_string()))?,
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        Signer {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            region: self.region.clone(),
            service: service.signing_name().to_owned(),
        }
        .sign(
            &http::Method::POST,
            &uri,
            &mut headers,
            &payload,
            SystemTime::now(),
        )
        .map_err(|e| ClientError::Transport(e.to_string()))?;
        let response = self
            .http
            .post(uri.to_string())
            .headers(headers)
            .body(payload)
            .send()
            .await
            .map_err(|e| {
                ClientError::Transport(format!(
                    "cannot reach {} (is `hail server` running there?): {}",
                    self.endpoint,
                    error_chain(&e)
                ))
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(error_chain(&e)))?;
        let json: Value = if bytes.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Transport(format!(
                    "{} answered {status} with something other than AWS JSON ({e}); is it a \
                     hail server?",
                    self.endpoint
                ))
            })?
        };
        if status.is_success() {
            return Ok(json);
        }
        let code = json["__type"]
            .as_str()
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
            .unwrap_or_else(|| status.to_string());
        let message = json["message"]
            .as_str()
            .or(json["Message"].as_str())
            .unwrap_or("")
            .to_owned();
        Err(ClientError::Api { code, message })
    }
}

/// An error and its causes, `: `-separated: reqwest's own message names
/// only the URL, the cause says what failed (refused, timed out, …).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(vars: &[(&str, &str)], flag: Option<&str>) -> anyhow::Result<Settings> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::resolve(
            |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            flag,
        )
    }

    #[test]
    fn settings_come_from_the_flag_the_environment_or_the_defaults() {
        let none = resolve(&[], None).unwrap();
        assert_eq!(
            none,
            Settings {
                endpoint: "http://127.0.0.1:4566".into(),
                region: "us-east-1".into(),
                credentials: None,
            }
        );
        let env = [
            ("AWS_ENDPOINT_URL", "http://10.0.0.1:4566"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIAX"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ];
        let from_env = resolve(&env, None).unwrap();
        assert_eq!(from_env.endpoint, "http://10.0.0.1:4566");
        assert_eq!(from_env.region, "eu-west-1");
        assert_eq!(
            from_env.credentials,
            Some(("AKIAX".into(), "secret".into()))
        );
        let flagged = resolve(&env, Some("http://127.0.0.1:9")).unwrap();
        assert_eq!(flagged.endpoint, "http://127.0.0.1:9");
        let both = resolve(
            &[
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_REGION", "ap-south-1"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(both.region, "ap-south-1");
        // Empty variables count as unset, as in the AWS tools.
        assert_eq!(resolve(&[("AWS_ACCESS_KEY_ID", "")], None).unwrap(), none);
    }

    #[test]
    fn half_a_key_pair_is_refused() {
        let err = resolve(&[("AWS_ACCESS_KEY_ID", "AKIAX")], None).unwrap_err();
        assert!(
            err.to_string().contains("AWS_SECRET_ACCESS_KEY is not"),
            "{err}"
        );
        assert!(resolve(&[("AWS_SECRET_ACCESS_KEY", "s")], None).is_err());
    }
}
