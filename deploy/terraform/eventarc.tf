locals {
  # The triggers this apply creates: every required one, and those whose
  # method is outside Eventarc's published audit-log catalog (optional) only
  # with var.optional_triggers: a refusal would fail the apply
  # (docs/deploy.md).
  enabled_triggers = {
    for name, t in local.triggers : name => t if !t.optional || var.optional_triggers
  }
  # Event filters per trigger: type always, serviceName and methodName for
  # audit-log triggers.
  trigger_filters = {
    for name, t in local.enabled_triggers : name => {
      for attribute, value in {
        type        = t.event_type
        serviceName = t.service_name
        methodName  = t.method_name
      } : attribute => value if value != ""
    }
  }
}

# One trigger per definition in eventarc/triggers.yaml. Audit-log triggers
# are "global", which receives the entries of every location (Eventarc
# locations), so services and load balancers in any region are seen; the
# replay trigger lives in var.region. All deliver to the function in
# var.region.
resource "google_eventarc_trigger" "iapguard" {
  for_each        = local.enabled_triggers
  project         = var.project
  name            = "${var.trigger_prefix}${each.key}"
  location        = each.value.location == "global" ? "global" : var.region
  service_account = google_service_account.trigger.email

  dynamic "matching_criteria" {
    for_each = local.trigger_filters[each.key]
    content {
      attribute = matching_criteria.key
      value     = matching_criteria.value
    }
  }

  dynamic "matching_criteria" {
    for_each = each.value.resource_name_pattern == "" ? [] : [each.value.resource_name_pattern]
    content {
      attribute = "resourceName"
      value     = matching_criteria.value
      operator  = "match-path-pattern"
    }
  }

  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.enforcer.name
      region  = var.region
    }
  }

  # The replay trigger reads the existing replay topic.
  dynamic "transport" {
    for_each = each.value.topic == "" ? [] : [each.value.topic]
    content {
      pubsub {
        topic = "projects/${var.project}/topics/${transport.value}"
      }
    }
  }

  depends_on = [
    google_project_iam_member.trigger_receives_events,
    google_cloud_run_v2_service_iam_member.trigger_invokes,
    google_pubsub_topic.replay,
    google_service_account_iam_member.deployer_acts_as,
    google_service_account_iam_member.pubsub_agent_mints_trigger_tokens,
  ]
}
