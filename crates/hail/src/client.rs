//! A client of Hail's AWS JSON 1.1 APIs, signed with SigV4: what the `hail`
//! subcommands that talk to a server (and `hail bench run-task`) use.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Context as _;
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
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let endpoint = endpoint
            .map(str::to_owned)
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| crate::server_cmd::DEFAULT_ENDPOINT.to_owned());
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| hail_model::arn::Scope::default().region);
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => Client::new(&endpoint, &key, &secret, &region),
            _ => {
                let mut client = Client::for_data_dir(data_dir, &endpoint)?;
                client.region = region;
                Ok(client)
            }
        }
    }

    fn new(endpoint: &str, key: &str, secret: &str, region: &str) -> anyhow::Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder()
                .build()
                .context("build the HTTP client")?,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            access_key_id: key.to_owned(),
            secret_access_key: secret.to_owned(),
            region: region.to_owned(),
        })
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
            .map_err(|e| ClientError::Transport(format!("{}: {e}", self.endpoint)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let json: Value = if bytes.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Transport(format!("{status}: unreadable answer ({e})")))?
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
