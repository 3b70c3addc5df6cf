# One Google service account per workload, each with only the roles it uses, bound to its
# Kubernetes ServiceAccount (k8s/base/serviceaccounts.yaml; coturn's in k8s/base/coturn.yaml)
# through Workload Identity: no key file exists anywhere. Resource-level grants live beside
# their resource (pubsub.tf, secrets.tf, sql.tf).

locals {
  workloads = {
    broadcast = {
      account_id = "firesfu-broadcast"
      ksa        = "firesfu-broadcast"
      title      = "firesfu broadcast (media servers)"
      roles = [
        "roles/datastore.user",
        "roles/cloudtrace.agent",
        "roles/monitoring.metricWriter",
        "roles/logging.logWriter",
      ]
    }
    monitor = {
      account_id = "firesfu-monitor"
      ksa        = "firesfu-monitor"
      title      = "firesfu monitor (room placement)"
      roles      = ["roles/datastore.user"]
    }
    sidecar = {
      account_id = "firesfu-sidecar"
      ksa        = "firesfu-sidecar"
      title      = "firesfu sidecar (accounts, rooms, join tokens)"
      roles = [
        "roles/datastore.user",
        "roles/cloudsql.client",
        "roles/cloudsql.instanceUser",
      ]
    }
    otel = {
      account_id = "firesfu-otel"
      ksa        = "otel-collector"
      title      = "firesfu OpenTelemetry Collector"
      roles = [
        "roles/cloudtrace.agent",
        "roles/monitoring.metricWriter",
        "roles/logging.logWriter",
      ]
    }
    # No project role: it only reads the TURN secret (accessor on that secret, secrets.tf).
    coturn = {
      account_id = "firesfu-coturn"
      ksa        = "coturn"
      title      = "firesfu coturn (TURN relay)"
      roles      = []
    }
  }

  workload_roles = merge([
    for name, w in local.workloads : {
      for role in w.roles : "${name}:${role}" => { workload = name, role = role }
    }
  ]...)
}

resource "google_service_account" "workload" {
  for_each = local.workloads

  account_id   = each.value.account_id
  display_name = each.value.title

  depends_on = [google_project_service.services]
}

resource "google_project_iam_member" "workload" {
  for_each = local.workload_roles

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.workload[each.value.workload].email}"
}

# Workload Identity: KSA NAMESPACE/NAME may act as its Google service account. The identity
# pool exists once the cluster does.
resource "google_service_account_iam_member" "workload_identity" {
  for_each = local.workloads

  service_account_id = google_service_account.workload[each.key].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.k8s_namespace}/${each.value.ksa}]"

  depends_on = [google_container_cluster.firesfu]
}

# The sidecar signs Firebase custom tokens through the IAM Credentials API (signJwt) as itself
# (FIRESFU_FIREBASE_SIGNING_ACCOUNT): token creator on its own account only.
resource "google_service_account_iam_member" "sidecar_sign_self" {
  service_account_id = google_service_account.workload["sidecar"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.workload["sidecar"].email}"
}

# Short names for the other files.
locals {
  sa_broadcast = google_service_account.workload["broadcast"]
  sa_monitor   = google_service_account.workload["monitor"]
  sa_sidecar   = google_service_account.workload["sidecar"]
  sa_otel      = google_service_account.workload["otel"]
  sa_coturn    = google_service_account.workload["coturn"]
}
