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

/// Pub/Sub: where load reports go.
#[derive(Debug, Clone, clap::Args)]
pub struct PubsubArgs {
    /// Pub/Sub emulator `host:port`. When set, clients use it with anonymous credentials.
    #[arg(long, env = "PUBSUB_EMULATOR_HOST")]
    pub pubsub_emulator_host: Option<String>,
    /// The topic load reports are published on (created when missing).
    #[arg(long, env = "FIRESFU_LOAD_TOPIC", default_value = "firesfu-load")]
    pub load_topic: String,
    /// The topic room events are published on (created when missing), for webhooks.
    #[arg(long, env = "FIRESFU_EVENTS_TOPIC", default_value = "firesfu-events")]
    pub events_topic: String,
}

impl PubsubArgs {
    pub fn topic_path(&self, project: &str) -> String {
        topic_path(project, &self.load_topic)
    }

    /// The emulator endpoint and anonymous credentials, or nothing (Google, with ADC).
    fn emulator(&self) -> Option<(String, google_cloud_auth::credentials::Credentials)> {
        self.pubsub_emulator_host.as_deref().map(|host| {
            (
                with_scheme(host),
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            )
        })
    }
}

pub fn topic_path(project: &str, topic: &str) -> String {
    format!("projects/{project}/topics/{topic}")
}

/// Every Pub/Sub client goes through these builders, so the emulator rule holds for all.
pub async fn pubsub_publisher(
    project: &str,
    args: &PubsubArgs,
) -> anyhow::Result<google_cloud_pubsub::client::Publisher> {
    publisher_to(project, args, &args.load_topic).await
}

/// A publisher to `topic` (the load topic or the events topic).
pub async fn publisher_to(
    project: &str,
    args: &PubsubArgs,
    topic: &str,
) -> anyhow::Result<google_cloud_pubsub::client::Publisher> {
    let mut builder = google_cloud_pubsub::client::Publisher::builder(topic_path(project, topic));
    if let Some((endpoint, credentials)) = args.emulator() {
        builder = builder
            .with_endpoint(endpoint)
            .with_credentials(credentials);
    }
    Ok(builder.build().await?)
}

pub async fn pubsub_subscriber(
    args: &PubsubArgs,
) -> anyhow::Result<google_cloud_pubsub::client::Subscriber> {
    let mut builder = google_cloud_pubsub::client::Subscriber::builder();
    if let Some((endpoint, credentials)) = args.emulator() {
        builder = builder
            .with_endpoint(endpoint)
            .with_credentials(credentials);
    }
    Ok(builder.build().await?)
}

pub async fn pubsub_topic_admin(
    args: &PubsubArgs,
) -> anyhow::Result<google_cloud_pubsub::client::TopicAdmin> {
    let mut builder = google_cloud_pubsub::client::TopicAdmin::builder();
    if let Some((endpoint, credentials)) = args.emulator() {
        builder = builder
            .with_endpoint(endpoint)
            .with_credentials(credentials);
    }
    Ok(builder.build().await?)
}

pub async fn pubsub_subscription_admin(
    args: &PubsubArgs,
) -> anyhow::Result<google_cloud_pubsub::client::SubscriptionAdmin> {
    let mut builder = google_cloud_pubsub::client::SubscriptionAdmin::builder();
    if let Some((endpoint, credentials)) = args.emulator() {
        builder = builder
            .with_endpoint(endpoint)
            .with_credentials(credentials);
    }
    Ok(builder.build().await?)
}

/// Creates the load topic unless it exists. Without the permission to create topics (a
/// least-privilege deployment, whose topic terraform made) it carries on: a missing topic
/// then shows as publish or subscribe errors naming it.
pub async fn ensure_topic(project: &str, args: &PubsubArgs) -> anyhow::Result<()> {
    ensure_topic_named(project, args, &args.load_topic).await
}

/// [`ensure_topic`] for any topic.
pub async fn ensure_topic_named(
    project: &str,
    args: &PubsubArgs,
    topic: &str,
) -> anyhow::Result<()> {
    let admin = pubsub_topic_admin(args).await?;
    match admin
        .create_topic()
        .set_name(topic_path(project, topic))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_already_exists(&e) => Ok(()),
        Err(e)
            if e.status().is_some_and(|s| {
                s.code == google_cloud_gax::error::rpc::Code::PermissionDenied
            }) =>
        {
            tracing::info!(
                topic,
                "no permission to create the topic; using it as the deployment made it"
            );
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("cannot create Pub/Sub topic {topic}: {e}")),
    }
}

pub fn is_already_exists(e: &google_cloud_pubsub::Error) -> bool {
    e.status()
        .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::AlreadyExists)
}

/// The topic or subscription is gone (an emulator restarted, someone deleted it).
pub fn is_not_found(e: &google_cloud_pubsub::Error) -> bool {
    e.status()
        .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::NotFound)
}

/// The same for a publish: the batch's RPC failed because the topic is gone.
pub fn publish_not_found(e: &google_cloud_pubsub::error::PublishError) -> bool {
    matches!(e, google_cloud_pubsub::error::PublishError::Rpc(e) if is_not_found(e))
}

/// Creates a monitor's subscription to the load topic unless it exists. Unconsumed for a day,
/// it expires: a monitor killed without cleaning up leaves nothing behind for long.
pub async fn ensure_subscription(
    project: &str,
    args: &PubsubArgs,
    subscription: &str,
) -> anyhow::Result<()> {
    let admin = pubsub_subscription_admin(args).await?;
    let created = admin
        .create_subscription()
        .set_name(subscription)
        .set_topic(args.topic_path(project))
        .set_ack_deadline_seconds(10)
        .set_expiration_policy(
            google_cloud_pubsub::model::ExpirationPolicy::new()
                .set_ttl(google_cloud_wkt::Duration::clamp(86_400, 0)),
        )
        .send()
        .await;
    subscription_made(created.map(|_| ()), subscription, false)
}

/// A subscription creation's outcome: made or there already is fine; so is "no permission"
/// where the deployment makes the subscription (`denied_ok`).
fn subscription_made(
    created: Result<(), google_cloud_pubsub::Error>,
    subscription: &str,
    denied_ok: bool,
) -> anyhow::Result<()> {
    match created {
        Ok(()) => Ok(()),
        Err(e) if is_already_exists(&e) => Ok(()),
        Err(e)
            if denied_ok
                && e.status().is_some_and(|s| {
                    s.code == google_cloud_gax::error::rpc::Code::PermissionDenied
                }) =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot create the Pub/Sub subscription {subscription}: {e}"
        )),
    }
}

/// Creates the webhook deliverers' subscription to the events topic unless it exists: shared
/// by every sidecar (each event is taken once), ordered (a room's events in the order they were
/// published), never expiring, unacknowledged events kept for 7 days.
pub async fn ensure_events_subscription(
    project: &str,
    args: &PubsubArgs,
    subscription: &str,
) -> anyhow::Result<()> {
    let admin = pubsub_subscription_admin(args).await?;
    let created = admin
        .create_subscription()
        .set_name(subscription)
        .set_topic(topic_path(project, &args.events_topic))
        .set_ack_deadline_seconds(60)
        .set_enable_message_ordering(true)
        .set_message_retention_duration(google_cloud_wkt::Duration::clamp(7 * 86_400, 0))
        .set_expiration_policy(google_cloud_pubsub::model::ExpirationPolicy::new())
        .send()
        .await;
    // Least privilege: the deployment made the subscription (terraform/pubsub.tf).
    subscription_made(created.map(|_| ()), subscription, true)
}
