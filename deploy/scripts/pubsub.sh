#!/usr/bin/env bash
# Creates or updates iapguard's Pub/Sub resources in DEPLOY_PROJECT:
#   - schema iapguard-outcome-v1 from deploy/pubsub/outcome.proto (a new
#     revision is committed when the file changed), checked first against the
#     example outcome pkg/outcome/testdata/remediated.golden.json;
#   - topic iapguard-outcomes, validated against that schema (JSON encoding);
#   - topic iapguard-replay (iapctl replay, the sweep, optional log sinks);
#   - topic iapguard-dead-letter and subscription iapguard-dead-letter-hold,
#     which keeps undeliverable events for 7 days (messages published to a
#     topic without subscriptions are lost);
#   - roles/pubsub.publisher for iapguard-enforcer on the outcomes topic and
#     on the replay topic (a sweep request fans out as one replay message per
#     labelled service, docs/orgwide.md), and for the Pub/Sub service agent on
#     the dead-letter topic.
#
# The caller needs roles/pubsub.admin.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require DEPLOY_PROJECT

proto="$REPO_ROOT/deploy/pubsub/outcome.proto"
sample="$REPO_ROOT/pkg/outcome/testdata/remediated.golden.json"
enforcer=$(account_email "$ENFORCER_ACCOUNT")

log "validating $sample against $proto"
gcloud pubsub schemas validate-message --project="$DEPLOY_PROJECT" --type=protocol-buffer \
  --definition-file="$proto" --message-encoding=json --message="$(<"$sample")" >/dev/null

if current=$(gcloud pubsub schemas describe "$OUTCOME_SCHEMA" --project="$DEPLOY_PROJECT" \
  --format='value(definition)' 2>/dev/null); then
  if [[ "$current" == "$(<"$proto")" ]]; then
    log "schema $OUTCOME_SCHEMA is current"
  else
    log "committing a new revision of schema $OUTCOME_SCHEMA"
    gcloud pubsub schemas commit "$OUTCOME_SCHEMA" --project="$DEPLOY_PROJECT" \
      --type=protocol-buffer --definition-file="$proto" >/dev/null
  fi
else
  log "creating schema $OUTCOME_SCHEMA"
  gcloud pubsub schemas create "$OUTCOME_SCHEMA" --project="$DEPLOY_PROJECT" \
    --type=protocol-buffer --definition-file="$proto" >/dev/null
fi

# ensure_topic TOPIC [CREATE_FLAGS...]
ensure_topic() {
  local topic=$1
  shift
  if gcloud pubsub topics describe "$topic" --project="$DEPLOY_PROJECT" >/dev/null 2>&1; then
    log "topic $topic exists"
  else
    log "creating topic $topic"
    gcloud pubsub topics create "$topic" --project="$DEPLOY_PROJECT" "$@" >/dev/null
  fi
}

ensure_topic "$OUTCOMES_TOPIC" --schema="$OUTCOME_SCHEMA" --message-encoding=json
schema=$(gcloud pubsub topics describe "$OUTCOMES_TOPIC" --project="$DEPLOY_PROJECT" --format='value(schemaSettings.schema)')
[[ "$schema" == */schemas/"$OUTCOME_SCHEMA" ]] ||
  die "topic $OUTCOMES_TOPIC validates against '${schema:-no schema}', not $OUTCOME_SCHEMA; see docs/operations.md (schema)"
ensure_topic "$REPLAY_TOPIC"
ensure_topic "$DEAD_LETTER_TOPIC"

if gcloud pubsub subscriptions describe "$DEAD_LETTER_HOLD" --project="$DEPLOY_PROJECT" >/dev/null 2>&1; then
  log "subscription $DEAD_LETTER_HOLD exists"
else
  log "creating subscription $DEAD_LETTER_HOLD"
  gcloud pubsub subscriptions create "$DEAD_LETTER_HOLD" --project="$DEPLOY_PROJECT" \
    --topic="$DEAD_LETTER_TOPIC" --message-retention-duration=7d --expiration-period=never >/dev/null
fi

gcloud pubsub topics add-iam-policy-binding "$OUTCOMES_TOPIC" --project="$DEPLOY_PROJECT" \
  --member="serviceAccount:$enforcer" --role=roles/pubsub.publisher >/dev/null
gcloud pubsub topics add-iam-policy-binding "$REPLAY_TOPIC" --project="$DEPLOY_PROJECT" \
  --member="serviceAccount:$enforcer" --role=roles/pubsub.publisher >/dev/null
gcloud pubsub topics add-iam-policy-binding "$DEAD_LETTER_TOPIC" --project="$DEPLOY_PROJECT" \
  --member="serviceAccount:$(pubsub_agent "$DEPLOY_PROJECT")" --role=roles/pubsub.publisher >/dev/null
log "topics ready: $OUTCOMES_TOPIC (schema $OUTCOME_SCHEMA), $REPLAY_TOPIC, $DEAD_LETTER_TOPIC"
