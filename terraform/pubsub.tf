# Load reports (docs/fleet.md): broadcast instances publish, every monitor reads through its own
# subscription, which it creates at start (firesfu-load-monitor-<id>, expiring after a day
# unused) and deletes at shutdown. Least privilege:
#   - broadcast: roles/pubsub.publisher on this topic only;
#   - monitor: a custom project role with exactly the subscription permissions it uses
#     (subscriptions are created at run time, so they cannot be granted one by one), plus
#     pubsub.topics.attachSubscription on this topic only.

resource "google_pubsub_topic" "load" {
  # checkov:skip=CKV_GCP_83: load reports are short-lived operational data (instance ids, counts, bitrates), no personal data; Google-managed encryption is enough
  name   = "firesfu-load"
  labels = var.labels

  # Reports older than a staleness are ignored anyway (FIRESFU_STALE_AFTER_MS).
  message_retention_duration = "600s"

  depends_on = [google_project_service.services]
}

resource "google_pubsub_topic_iam_member" "broadcast_publish" {
  topic  = google_pubsub_topic.load.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${local.sa_broadcast.email}"
}

resource "google_project_iam_custom_role" "monitor_subscriptions" {
  role_id     = "firesfuMonitorSubscriptions"
  title       = "firesfu monitor: its own load-report subscriptions"
  description = "Create, read from and delete the monitor's own Pub/Sub subscription."
  permissions = [
    "pubsub.subscriptions.consume",
    "pubsub.subscriptions.create",
    "pubsub.subscriptions.delete",
    "pubsub.subscriptions.get",
  ]
}

resource "google_project_iam_member" "monitor_subscriptions" {
  project = var.project_id
  role    = google_project_iam_custom_role.monitor_subscriptions.id
  member  = "serviceAccount:${local.sa_monitor.email}"
}

resource "google_project_iam_custom_role" "attach_subscription" {
  role_id     = "firesfuTopicAttachSubscription"
  title       = "firesfu monitor: attach subscriptions to a topic"
  description = "Attach a subscription to the topic this role is granted on."
  permissions = ["pubsub.topics.attachSubscription"]
}

resource "google_pubsub_topic_iam_member" "monitor_attach" {
  topic  = google_pubsub_topic.load.id
  role   = google_project_iam_custom_role.attach_subscription.id
  member = "serviceAccount:${local.sa_monitor.email}"
}


# Room events (docs/sidecar.md, "Webhooks"): broadcast instances and monitors publish (ordering
# key = room), every sidecar replica takes them from one shared, ordered subscription and
# delivers webhooks. Events wait up to 7 days for a sidecar; the subscription never expires.
resource "google_pubsub_topic" "events" {
  # checkov:skip=CKV_GCP_83: room events carry display names and session ids only as long as a delivery needs them; Google-managed encryption is enough
  name   = "firesfu-events"
  labels = var.labels

  message_retention_duration = "604800s"

  depends_on = [google_project_service.services]
}

resource "google_pubsub_subscription" "webhooks" {
  name                       = "firesfu-webhooks"
  topic                      = google_pubsub_topic.events.id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  enable_message_ordering    = true
  message_retention_duration = "604800s"

  # Never expires, however long no sidecar consumes it.
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic_iam_member" "events_publish" {
  for_each = {
    broadcast = local.sa_broadcast.email
    monitor   = local.sa_monitor.email
  }
  topic  = google_pubsub_topic.events.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${each.value}"
}

resource "google_pubsub_subscription_iam_member" "sidecar_webhooks" {
  subscription = google_pubsub_subscription.webhooks.id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.sa_sidecar.email}"
}
