# Firebase on the project: the web app's public configuration (API key, auth domain) and
# Firebase Authentication (Identity Platform), which accepts the sidecar's custom tokens
# (signInWithCustomToken). No provider (password, Google, ...) is enabled: firesfu users sign
# in to the sidecar, which mints the custom token.

resource "google_firebase_project" "this" {
  provider = google-beta
  project  = var.project_id

  depends_on = [google_project_service.services]
}

resource "google_firebase_web_app" "firesfu" {
  provider     = google-beta
  project      = var.project_id
  display_name = "firesfu"

  depends_on = [google_firebase_project.this]
}

data "google_firebase_web_app_config" "firesfu" {
  provider   = google-beta
  project    = var.project_id
  web_app_id = google_firebase_web_app.firesfu.app_id
}

resource "google_identity_platform_config" "auth" {
  project = var.project_id

  authorized_domains = [
    var.domain,
    "${var.project_id}.firebaseapp.com",
  ]

  depends_on = [google_firebase_project.this]
}
