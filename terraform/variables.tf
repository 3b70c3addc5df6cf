variable "project_id" {
  description = "The Google Cloud project that hosts everything (an empty project with billing enabled)."
  type        = string
}

variable "region" {
  description = "Region of the cluster, Cloud SQL, Artifact Registry and the subnet (e.g. europe-west1)."
  type        = string
  default     = "europe-west1"
}

variable "firestore_location" {
  description = "Firestore location: a multi-region (eur3, nam5) or a region; cannot be changed after creation."
  type        = string
  default     = "eur3"
}

variable "domain" {
  description = "Public DNS name of the web app and API (the Google-managed certificate is issued for it), e.g. meet.example.com. Lower case."
  type        = string
}

variable "turn_domain" {
  description = "Public DNS name of the TURN server (coturn): its realm, the name in its TLS certificate and the host of the STUN/TURN URLs handed to clients. Empty: turn.<domain>."
  type        = string
  default     = ""
}

variable "k8s_namespace" {
  description = "Kubernetes namespace of the firesfu workloads (k8s/base sets firesfu); Workload Identity bindings name it."
  type        = string
  default     = "firesfu"
}

variable "cluster_name" {
  description = "Name of the GKE Autopilot cluster."
  type        = string
  default     = "firesfu"
}

variable "release_channel" {
  description = "GKE release channel of the cluster: RAPID, REGULAR or STABLE."
  type        = string
  default     = "REGULAR"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
}

variable "authorized_networks" {
  description = "CIDR blocks (name => CIDR) allowed to reach the cluster's control plane, e.g. { office = \"203.0.113.0/24\" }. Empty: nobody outside Google Cloud."
  type        = map(string)
  default     = {}
}

variable "subnet_cidr" {
  description = "Primary range of the cluster subnet (nodes)."
  type        = string
  default     = "10.10.0.0/20"
}

variable "pods_cidr" {
  description = "Secondary range for pods."
  type        = string
  default     = "10.16.0.0/14"
}

variable "services_cidr" {
  description = "Secondary range for Services."
  type        = string
  default     = "10.20.0.0/20"
}

variable "sql_tier" {
  description = "Cloud SQL machine tier (Enterprise edition), e.g. db-custom-1-3840 (1 vCPU, 3.75 GB) or db-g1-small for development."
  type        = string
  default     = "db-custom-1-3840"
}

variable "sql_availability_type" {
  description = "REGIONAL (a standby in another zone, automatic failover) or ZONAL (development)."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "ZONAL"], var.sql_availability_type)
    error_message = "sql_availability_type must be REGIONAL or ZONAL."
  }
}

variable "sql_disk_size_gb" {
  description = "Initial Cloud SQL disk size in GB (it grows automatically)."
  type        = number
  default     = 10
}

variable "deletion_protection" {
  description = "Protect the cluster, the Cloud SQL instance and the Firestore database from `terraform destroy`."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels put on every resource that takes them."
  type        = map(string)
  default = {
    app = "firesfu"
  }
}
