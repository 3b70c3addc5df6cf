# The VPC: one subnet for the cluster (with pod and Service ranges), Cloud NAT for images from
# public registries (nodes have no external address), private services access for Cloud SQL,
# the load balancer pieces of the sidecar's Ingress, and coturn's address.

resource "google_compute_network" "firesfu" {
  name                    = "firesfu"
  auto_create_subnetworks = false

  depends_on = [google_project_service.services]
}

# Nothing reaches the VPC unless a rule allows it. GKE adds its own rules (priority 1000) for
# the load balancers it creates: the sidecar's Ingress, each broadcast pod's media Service and
# coturn's Service (3478 UDP/TCP, 443 TCP; never the relay ports).
resource "google_compute_firewall" "deny_all_ingress" {
  name      = "firesfu-deny-all-ingress"
  network   = google_compute_network.firesfu.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_subnetwork" "firesfu" {
  name                     = "firesfu-${var.region}"
  region                   = var.region
  network                  = google_compute_network.firesfu.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.1
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "firesfu" {
  name    = "firesfu-${var.region}"
  region  = var.region
  network = google_compute_network.firesfu.id
}

resource "google_compute_router_nat" "firesfu" {
  name                               = "firesfu-${var.region}"
  router                             = google_compute_router.firesfu.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# Private services access: Cloud SQL gets an address inside this VPC (no public IP).
resource "google_compute_global_address" "private_services" {
  name          = "firesfu-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 16
  network       = google_compute_network.firesfu.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.firesfu.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

# The sidecar Ingress's address (k8s: kubernetes.io/ingress.global-static-ip-name). Reserved
# here so that DNS can point at it before the load balancer exists.
resource "google_compute_global_address" "ingress" {
  name = "firesfu-sidecar"

  depends_on = [google_project_service.services]
}

# coturn's address (k8s: the Service coturn, annotation
# networking.gke.io/load-balancer-ip-addresses): regional, for its passthrough Network Load
# Balancer. Reserved here so that DNS (TURN_DOMAIN) can point at it before the Service exists,
# and keeps pointing at it whatever happens to the Service.
resource "google_compute_address" "turn" {
  name         = "firesfu-turn"
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"
  labels       = var.labels

  depends_on = [google_project_service.services]
}

# TLS 1.2 or later with modern ciphers (k8s: FrontendConfig sslPolicy).
resource "google_compute_ssl_policy" "modern" {
  name            = "firesfu-modern"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"

  depends_on = [google_project_service.services]
}
