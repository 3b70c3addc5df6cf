//! The client side of the signalling protocol, exactly as `docs/signalling.md` describes it:
//! write the session document, listen to it, re-offer, leave.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use firestore::gcloud_sdk::google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use firestore::gcloud_sdk::google_cloud_auth::errors::CredentialsError;
use firestore::gcloud_sdk::tonic::codegen::http::header::AUTHORIZATION;
use firestore::gcloud_sdk::tonic::codegen::http::{Extensions, HeaderMap, HeaderValue};
use firestore::{
    FirestoreDb, FirestoreDbOptions, FirestoreListenEvent, FirestoreListenerParams,
    FirestoreListenerTarget, FirestoreMemListenStateStorage, FirestoreTimestamp,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Talks to the Firestore emulator as an admin (the emulator's "owner" token), never to Google.
#[derive(Debug)]
struct Owner(EntityTag);

impl CredentialsProvider for Owner {
    async fn headers(
        &self,
        ext: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        if ext.get::<EntityTag>() == Some(&self.0) {
            return Ok(CacheableResource::NotModified);
        }
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer owner"));
        Ok(CacheableResource::New {
            entity_tag: self.0.clone(),
            data: h,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

pub async fn connect_emulator(host: &str, project: &str) -> anyhow::Result<FirestoreDb> {
    let options =
        FirestoreDbOptions::new(project.to_owned()).with_firebase_api_url(format!("http://{host}"));
    FirestoreDb::with_options_auth(options, Credentials::from(Owner(EntityTag::new())))
        .await
        .with_context(|| format!("cannot reach the Firestore emulator at {host}"))
}

pub async fn create_room(db: &FirestoreDb, room: &str) -> anyhow::Result<()> {
    let fields = json!({"name": room});
    retrying(|| {
        db.fluent()
            .update()
            .in_col("rooms")
            .document_id(room)
            .object(&fields)
            .execute::<()>()
    })
    .await?;
    Ok(())
}

/// Runs a write again, up to four more times, while Firestore marks its failure retryable (the
/// emulator answers `Cancelled` now and then while other clients' streams are torn down), as
/// an application's client would.
async fn retrying<F, Fut>(mut write: F) -> Result<(), firestore::errors::FirestoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), firestore::errors::FirestoreError>>,
{
    let mut attempt = 0;
    loop {
        match write().await {
            Err(firestore::errors::FirestoreError::DatabaseError(e))
                if e.retry_possible && attempt < 4 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            other => return other,
        }
    }
}

/// One session document.
#[derive(Clone)]
pub struct SessionDoc {
    pub db: FirestoreDb,
    pub room: String,
    pub session: String,
}

fn ts(t: SystemTime) -> FirestoreTimestamp {
    FirestoreTimestamp::try_from(t).unwrap_or_else(|_| FirestoreTimestamp::now())
}

impl SessionDoc {
    fn parent(&self) -> anyhow::Result<String> {
        Ok(self.db.parent_path("rooms", &self.room)?.into())
    }

    /// Writes raw fields (tests use this to send malformed documents).
    pub async fn write_raw(&self, fields: &Value) -> anyhow::Result<()> {
        let parent = self.parent()?;
        retrying(|| {
            self.db
                .fluent()
                .update()
                .in_col("sessions")
                .document_id(&self.session)
                .parent(&parent)
                .object(fields)
                .execute::<()>()
        })
        .await?;
        Ok(())
    }

    pub async fn create(
        &self,
        display_name: &str,
        uid: &str,
        token: Option<&str>,
        traceparent: Option<&str>,
        sdp: &str,
    ) -> anyhow::Result<()> {
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Create {
            v: i64,
            display_name: String,
            uid: String,
            token: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            traceparent: Option<String>,
            offer: Value,
            state: String,
            created_at: FirestoreTimestamp,
            expires_at: FirestoreTimestamp,
        }
        let now = SystemTime::now();
        let doc = Create {
            v: 1,
            display_name: display_name.to_owned(),
            uid: uid.to_owned(),
            token: token.map(str::to_owned),
            traceparent: traceparent.map(str::to_owned),
            offer: json!({"sdp": sdp, "revision": 1}),
            state: "offered".into(),
            created_at: ts(now),
            expires_at: ts(now + Duration::from_secs(3600)),
        };
        let parent = self.parent()?;
        self.db
            .fluent()
            .insert()
            .into("sessions")
            .document_id(&self.session)
            .parent(&parent)
            .object(&doc)
            .execute::<()>()
            .await?;
        Ok(())
    }

    pub async fn reoffer(&self, sdp: &str, revision: i64) -> anyhow::Result<()> {
        self.update(
            json!({"offer": {"sdp": sdp, "revision": revision}, "state": "offered"}),
            &["offer", "state"],
        )
        .await
    }

    pub async fn close(&self) -> anyhow::Result<()> {
        self.update(json!({"state": "closed"}), &["state"]).await
    }

    pub async fn update(&self, fields: Value, mask: &[&str]) -> anyhow::Result<()> {
        let parent = self.parent()?;
        retrying(|| {
            self.db
                .fluent()
                .update()
                .fields(mask.iter().copied())
                .in_col("sessions")
                .document_id(&self.session)
                .parent(&parent)
                .object(&fields)
                .execute::<()>()
        })
        .await?;
        Ok(())
    }

    pub async fn delete(&self) -> anyhow::Result<()> {
        let parent = self.parent()?;
        self.db
            .fluent()
            .delete()
            .from("sessions")
            .parent(&parent)
            .document_id(&self.session)
            .execute()
            .await?;
        Ok(())
    }

    pub async fn read(&self) -> anyhow::Result<Option<Value>> {
        let parent = self.parent()?;
        let doc = self
            .db
            .fluent()
            .select()
            .by_id_in("sessions")
            .parent(&parent)
            .one(&self.session)
            .await?;
        Ok(doc
            .map(|d| FirestoreDb::deserialize_doc_to::<Value>(&d))
            .transpose()?)
    }

    /// Every snapshot of the document, in order (`None` when deleted).
    pub async fn listen(
        &self,
    ) -> anyhow::Result<(mpsc::UnboundedReceiver<Option<Value>>, Listener)> {
        let mut listener = self
            .db
            .create_listener_with_params(
                FirestoreMemListenStateStorage::new(),
                FirestoreListenerParams::new().with_retry_delay(Duration::from_millis(200)),
            )
            .await?;
        let parent = self.parent()?;
        self.db
            .fluent()
            .select()
            .by_id_in("sessions")
            .parent(&parent)
            .batch_listen([self.session.clone()])
            .add_target(FirestoreListenerTarget::new(1), &mut listener)?;
        let (tx, rx) = mpsc::unbounded_channel();
        listener
            .start(move |event| {
                let tx = tx.clone();
                async move {
                    let snapshot = match event {
                        FirestoreListenEvent::DocumentChange(c) => c
                            .document
                            .and_then(|d| FirestoreDb::deserialize_doc_to::<Value>(&d).ok())
                            .map(Some),
                        FirestoreListenEvent::DocumentDelete(_)
                        | FirestoreListenEvent::DocumentRemove(_) => Some(None),
                        _ => None,
                    };
                    if let Some(s) = snapshot {
                        let _ = tx.send(s);
                    }
                    Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
                }
            })
            .await?;
        Ok((rx, Listener(listener)))
    }
}

pub struct Listener(firestore::FirestoreListener<FirestoreDb, FirestoreMemListenStateStorage>);

impl Listener {
    pub async fn stop(mut self) {
        let _ = self.0.shutdown().await;
    }
}
