# Cloud SQL for PostgreSQL 15, private IP only, reachable only through the Cloud SQL Auth
# Proxy or connectors (connector_enforcement), with IAM database authentication: the sidecar's
# Google service account is its database user, without a password.

resource "google_sql_database_instance" "firesfu" {
  # checkov:skip=CKV_GCP_79: PostgreSQL 15 is the version firesfu's migrations and tests run on (scripts/lib.sh); upgrade with the project
  # checkov:skip=CKV2_GCP_13: log_duration would log the duration of every statement (a few per API request): log volume and cost without value; Query Insights records latencies
  name                = "firesfu"
  region              = var.region
  database_version    = "POSTGRES_15"
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.sql_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.sql_availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.sql_disk_size_gb
    disk_autoresize             = true
    connector_enforcement       = "REQUIRED"
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = var.labels

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.firesfu.id
      # The Auth Proxy always presents an ephemeral client certificate.
      ssl_mode = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "02:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = 14
      }
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "firesfu" {
  name     = "firesfu"
  instance = google_sql_database_instance.firesfu.name
}

# The sidecar's database user is its service account (the name drops ".gserviceaccount.com").
# cloudsqlsuperuser lets it own and migrate the schema (PostgreSQL 15 grants nothing on the
# public schema by default); the instance serves firesfu only.
resource "google_sql_user" "sidecar" {
  name           = trimsuffix(local.sa_sidecar.email, ".gserviceaccount.com")
  instance       = google_sql_database_instance.firesfu.name
  type           = "CLOUD_IAM_SERVICE_ACCOUNT"
  database_roles = ["cloudsqlsuperuser"]
}
