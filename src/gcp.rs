//! Google clients, built in one place so that one rule holds everywhere: with an emulator
//! endpoint configured, a client talks to that endpoint only and never looks up Google
//! credentials (which would mean traffic to Google's metadata or token servers).

use std::path::PathBuf;

use firestore::gcloud_sdk::google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use firestore::gcloud_sdk::google_cloud_auth::errors::CredentialsError;
use firestore::gcloud_sdk::tonic::codegen::http::header::AUTHORIZATION;
use firestore::gcloud_sdk::tonic::codegen::http::{Extensions, HeaderMap, HeaderValue};
use firestore::{FirestoreDb, FirestoreDbOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct GcpArgs {
    /// Google Cloud project id (with an emulator, any `demo-…` id).
    #[arg(long = "project", env = "GOOGLE_CLOUD_PROJECT")]
    pub project: String,
    /// Firestore emulator `host:port`. When set, no Google credentials are used.
    #[arg(long, env = "FIRESTORE_EMULATOR_HOST")]
    pub firestore_emulator_host: Option<String>,
    /// Service-account key file; without it, Application Default Credentials are used.
    #[arg(long, env = "GOOGLE_APPLICATION_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
}

/// The conventional stub token of Google's local emulators. It makes the Firestore emulator
/// treat requests as an admin's (security rules do not apply), as the server's are in
/// production.
#[derive(Debug)]
struct EmulatorOwner {
    tag: EntityTag,
}

impl CredentialsProvider for EmulatorOwner {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer owner"));
        Ok(CacheableResource::New {
            entity_tag: self.tag.clone(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

fn with_scheme(host: &str) -> String {
    if host.contains("://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    }
}

pub async fn firestore(args: &GcpArgs) -> anyhow::Result<FirestoreDb> {
    let mut options = FirestoreDbOptions::new(args.project.clone());
    let db = match &args.firestore_emulator_host {
        Some(host) => {
            options = options.with_firebase_api_url(with_scheme(host));
            let owner = EmulatorOwner {
                tag: EntityTag::new(),
            };
            FirestoreDb::with_options_auth(options, Credentials::from(owner)).await
        }
        None => match &args.credentials {
            Some(path) => {
                FirestoreDb::with_options_service_account_key_file(options, path.clone()).await
            }
            None => FirestoreDb::with_options(options).await,
        },
    };
    db.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to Firestore (project {}, {}): {e}",
            args.project,
            args.firestore_emulator_host
                .as_deref()
                .map(|h| format!("emulator {h}"))
                .unwrap_or_else(|| "Google".into())
        )
    })
}
