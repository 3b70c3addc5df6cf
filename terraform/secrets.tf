# Secrets mounted by the GKE Secret Manager add-on. Terraform creates each secret, never a
# version: no key enters the state. Add them once (docs/deploy.md, "First admin steps"):
#   openssl genpkey -algorithm ed25519 | gcloud secrets versions add firesfu-join-key --data-file=-
#   openssl rand -hex 32 | gcloud secrets versions add firesfu-turn-secret --data-file=-
#   openssl rand -base64 32 | gcloud secrets versions add firesfu-camera-key --data-file=-

# The Ed25519 key that signs join tokens (FIRESFU_JOIN_KEY_FILE), mounted into the sidecar.
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

# The secret shared by coturn (static-auth-secret) and the sidecar (FIRESFU_TURN_SECRET_FILE),
# which mints TURN credentials from it at every join (docs/deploy.md, "TURN (coturn)"). Both
# mount it; nobody else reads it.
resource "google_secret_manager_secret" "turn_secret" {
  secret_id = "firesfu-turn-secret"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.services]
}

resource "google_secret_manager_secret_iam_member" "turn_secret" {
  for_each = {
    sidecar = local.sa_sidecar.email
    coturn  = local.sa_coturn.email
  }

  secret_id = google_secret_manager_secret.turn_secret.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value}"
}

# The key IP cameras' URLs and credentials are sealed with (FIRESFU_CAMERA_KEY_FILE): the
# sidecar seals them, broadcast instances open them to pull the cameras. Both mount it. Changing
# it takes more than a new version (docs/sidecar.md, "Cameras", "Changing the key").
resource "google_secret_manager_secret" "camera_key" {
  secret_id = "firesfu-camera-key"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.services]
}

resource "google_secret_manager_secret_iam_member" "camera_key" {
  for_each = {
    sidecar   = local.sa_sidecar.email
    broadcast = local.sa_broadcast.email
  }

  secret_id = google_secret_manager_secret.camera_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value}"
}
