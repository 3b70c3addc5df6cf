# GKE Autopilot: Workload Identity is always on (every workload has its own Google service
# account, iam.tf); the Secret Manager add-on mounts the join-token key into the sidecar and the
# TURN secret into the sidecar and coturn.

# The nodes' own identity: only what nodes need (logs, metrics, pulling images), never the
# Compute Engine default service account.
resource "google_service_account" "nodes" {
  account_id   = "firesfu-gke-nodes"
  display_name = "firesfu GKE nodes"

  depends_on = [google_project_service.services]
}

resource "google_project_iam_member" "nodes_default" {
  project = var.project_id
  role    = "roles/container.defaultNodeServiceAccount"
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_container_cluster" "firesfu" {
  # checkov:skip=CKV_GCP_65: Google Groups for RBAC needs a Google Workspace/Cloud Identity domain the project may not have; access is through IAM roles on the project
  # checkov:skip=CKV_GCP_13: client certificate authentication is disabled by default on GKE; the provider has no attribute to assert it on Autopilot
  # checkov:skip=CKV_GCP_12: Autopilot always runs Dataplane V2, which enforces NetworkPolicy (k8s/base/networkpolicies.yaml); the network_policy block is refused on Autopilot
  # checkov:skip=CKV_GCP_69: Autopilot always runs the GKE metadata server (Workload Identity); node_config cannot be set on Autopilot
  # checkov:skip=CKV_GCP_61: intranode visibility is not configurable the Standard way on Autopilot; VPC flow logs are on for the cluster subnet (network.tf)
  name             = var.cluster_name
  location         = var.region
  enable_autopilot = true
  # Dataplane V2 (Autopilot's only datapath) enforces NetworkPolicy (k8s/base/networkpolicies.yaml).
  datapath_provider   = "ADVANCED_DATAPATH"
  deletion_protection = var.deletion_protection
  resource_labels     = var.labels

  network    = google_compute_network.firesfu.id
  subnetwork = google_compute_subnetwork.firesfu.id

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  release_channel {
    channel = var.release_channel
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  # Nodes have internal addresses only; the control plane keeps its public endpoint but only
  # the networks listed in var.authorized_networks reach it.
  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
  }

  master_authorized_networks_config {
    gcp_public_cidrs_access_enabled = false

    dynamic "cidr_blocks" {
      for_each = var.authorized_networks
      content {
        display_name = cidr_blocks.key
        cidr_block   = cidr_blocks.value
      }
    }
  }

  secret_manager_config {
    enabled = true
  }

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  cluster_autoscaling {
    auto_provisioning_defaults {
      service_account = google_service_account.nodes.email
      oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    }
  }

  depends_on = [
    google_project_service.services,
    google_project_iam_member.nodes_default,
  ]
}
