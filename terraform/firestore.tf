# Firestore (native mode): the signalling database. Its rules are ../firestore.rules, and its
# indexes, index exemptions and TTL policies are ../firestore.indexes.json, the file the
# Firebase CLI deploys too (`firebase deploy --only firestore`): one list, two tools.
# tests/deploy/indexes.py checks that the list covers every query in src/ and that the TTL
# policies are those docs/signalling.md names.

locals {
  firestore_config = jsondecode(file("${path.module}/../firestore.indexes.json"))

  composite_indexes = {
    for ix in local.firestore_config.indexes :
    "${ix.collectionGroup}:${join(",", [for f in ix.fields : f.fieldPath])}" => ix
  }

  field_overrides = {
    for f in local.firestore_config.fieldOverrides : "${f.collectionGroup}.${f.fieldPath}" => f
  }
}

resource "google_firestore_database" "default" {
  name                              = "(default)"
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.services]
}

resource "google_firebaserules_ruleset" "firestore" {
  source {
    files {
      name    = "firestore.rules"
      content = file("${path.module}/../firestore.rules")
    }
  }

  depends_on = [google_firestore_database.default]
}

resource "google_firebaserules_release" "firestore" {
  name         = "cloud.firestore"
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore.name}"

  lifecycle {
    replace_triggered_by = [google_firebaserules_ruleset.firestore]
  }
}

# Composite indexes.
resource "google_firestore_index" "composite" {
  for_each = local.composite_indexes

  database    = google_firestore_database.default.name
  collection  = each.value.collectionGroup
  query_scope = each.value.queryScope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.fieldPath
      order      = try(fields.value.order, null)
    }
  }
}

# Single-field settings: collection-group indexes (not automatic), and the TTL fields
# (expiresAt of sessions, participants, joinTokens), exempt from indexing.
resource "google_firestore_field" "overrides" {
  for_each = local.field_overrides

  database   = google_firestore_database.default.name
  collection = each.value.collectionGroup
  field      = each.value.fieldPath

  index_config {
    dynamic "indexes" {
      for_each = each.value.indexes
      content {
        query_scope  = indexes.value.queryScope
        order        = try(indexes.value.order, null)
        array_config = try(indexes.value.arrayConfig, null)
      }
    }
  }

  dynamic "ttl_config" {
    for_each = try(each.value.ttl, false) ? [true] : []
    content {}
  }
}
