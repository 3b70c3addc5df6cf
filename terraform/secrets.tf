# The Ed25519 key that signs join tokens (FIRESFU_JOIN_KEY_FILE), mounted into the sidecar by
# the GKE Secret Manager add-on. Terraform creates the secret, never a version: the key never
# enters the state. Add it once (docs/deploy.md, "First admin steps"):
#   openssl genpkey -algorithm ed25519 | gcloud secrets versions add firesfu-join-key --data-file=-

resource "google_secret_manager_secret" "join_key" {
  secret_id = "firesfu-join-key"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.services]
}

resource "google_secret_manager_secret_iam_member" "sidecar_join_key" {
  secret_id = google_secret_manager_secret.join_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${local.sa_sidecar.email}"
}
