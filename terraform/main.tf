# firesfu on Google Cloud: a GKE Autopilot cluster running broadcast, monitor, sidecar, an
# OpenTelemetry Collector and coturn (k8s/), with Firestore for signalling, Pub/Sub for load
# reports, Cloud SQL for the sidecar and Secret Manager for the join-token key and the TURN
# secret. docs/deploy.md walks through `terraform apply` and what follows.

locals {
  services = [
    "artifactregistry.googleapis.com",
    "binaryauthorization.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudtrace.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "firebase.googleapis.com",
    "firebaserules.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "identitytoolkit.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
  ]
}

resource "google_project_service" "services" {
  for_each = toset(local.services)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # coturn's DNS name (var.turn_domain, by default turn.<domain>).
  turn_domain = var.turn_domain != "" ? var.turn_domain : "turn.${var.domain}"
}
