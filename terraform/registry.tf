resource "google_artifact_registry_repository" "firesfu" {
  # checkov:skip=CKV_GCP_84: images hold no secrets or personal data; Google-managed encryption is enough
  location      = var.region
  repository_id = "firesfu"
  description   = "firesfu container images"
  format        = "DOCKER"
  labels        = var.labels

  docker_config {
    immutable_tags = true
  }

  # Keep the ten most recent images; untagged leftovers go after 30 days.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.services]
}

resource "google_artifact_registry_repository_iam_member" "nodes_read" {
  location   = google_artifact_registry_repository.firesfu.location
  repository = google_artifact_registry_repository.firesfu.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.nodes.email}"
}
