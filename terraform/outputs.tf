output "cluster_name" {
  description = "The GKE Autopilot cluster."
  value       = google_container_cluster.firesfu.name
}

output "get_credentials" {
  description = "Command that points kubectl at the cluster."
  value       = "gcloud container clusters get-credentials ${google_container_cluster.firesfu.name} --region ${var.region} --project ${var.project_id}"
}

output "image_repository" {
  description = "Where to push the firesfu image (docker push <this>:<tag>)."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.firesfu.repository_id}/firesfu"
}

output "ingress_ip" {
  description = "Address of the web app and API: create the DNS A record <domain> -> this address."
  value       = google_compute_global_address.ingress.address
}

output "turn_ip" {
  description = "Address of the TURN server (coturn): create the DNS A record <turn domain> -> this address."
  value       = google_compute_address.turn.address
}

output "turn_domain" {
  description = "DNS name of the TURN server (coturn)."
  value       = local.turn_domain
}

output "service_accounts" {
  description = "Google service account of each workload."
  value       = { for k, sa in google_service_account.workload : k => sa.email }
}

output "sql_instance_connection_name" {
  description = "Cloud SQL instance connection name (project:region:instance), for the Auth Proxy."
  value       = google_sql_database_instance.firesfu.connection_name
}

output "database_url" {
  description = "The sidecar's DATABASE_URL: its IAM database user through the Auth Proxy on 127.0.0.1, no password."
  value       = "postgres://${urlencode(google_sql_user.sidecar.name)}@127.0.0.1:5432/${google_sql_database.firesfu.name}?sslmode=disable"
}

output "join_key_secret" {
  description = "Secret Manager secret that must receive the join-token key (a version) before the sidecar starts."
  value       = google_secret_manager_secret.join_key.id
}

output "turn_secret" {
  description = "Secret Manager secret that must receive the secret shared by coturn and the sidecar (a version) before either starts."
  value       = google_secret_manager_secret.turn_secret.id
}

output "firebase_web_config" {
  description = "The browser's Firebase configuration (public values)."
  value = {
    api_key     = data.google_firebase_web_app_config.firesfu.api_key
    auth_domain = data.google_firebase_web_app_config.firesfu.auth_domain
    project_id  = var.project_id
  }
}

output "deploy_env" {
  description = "Contents for k8s/overlays/<env>/deploy.env (all but IMAGE): terraform output -raw deploy_env."
  value = join("\n", [
    "# Written by: terraform output -raw deploy_env (add IMAGE=<repository>@sha256:<digest>)",
    "PROJECT_ID=${var.project_id}",
    "DOMAIN=${var.domain}",
    "BROADCAST_GSA=${local.sa_broadcast.email}",
    "MONITOR_GSA=${local.sa_monitor.email}",
    "SIDECAR_GSA=${local.sa_sidecar.email}",
    "OTEL_GSA=${local.sa_otel.email}",
    "COTURN_GSA=${local.sa_coturn.email}",
    "SQL_INSTANCE_CONNECTION_NAME=${google_sql_database_instance.firesfu.connection_name}",
    "DATABASE_URL=postgres://${urlencode(google_sql_user.sidecar.name)}@127.0.0.1:5432/${google_sql_database.firesfu.name}?sslmode=disable",
    "FIREBASE_API_KEY=${data.google_firebase_web_app_config.firesfu.api_key}",
    "FIREBASE_AUTH_DOMAIN=${data.google_firebase_web_app_config.firesfu.auth_domain}",
    "INGRESS_STATIC_IP_NAME=${google_compute_global_address.ingress.name}",
    "SSL_POLICY_NAME=${google_compute_ssl_policy.modern.name}",
    "TURN_DOMAIN=${local.turn_domain}",
    "TURN_STATIC_IP_NAME=${google_compute_address.turn.name}",
    "",
  ])
}
