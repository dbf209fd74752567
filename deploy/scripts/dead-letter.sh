#!/usr/bin/env bash
# Gives the Pub/Sub subscription of every iapguard Eventarc trigger (Eventarc
# creates and owns them) a dead-letter policy: after
# DEPLOY_MAX_DELIVERY_ATTEMPTS (default 10) failed deliveries an event goes
# to the iapguard-dead-letter topic instead of being retried until it
# expires. The triggers script cloudbuild.yaml runs does this itself; run
# this after `terraform apply`, which cannot express it.
#
# The caller needs roles/eventarc.viewer and roles/pubsub.admin.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require DEPLOY_PROJECT

prefix=${DEPLOY_TRIGGER_PREFIX:-iapguard-}
attempts=${DEPLOY_MAX_DELIVERY_ATTEMPTS:-10}
agent=$(pubsub_agent "$DEPLOY_PROJECT")

count=0
for trigger in $(gcloud eventarc triggers list --project="$DEPLOY_PROJECT" --location=- \
  --filter="name~/triggers/$prefix" --format='value(name)'); do
  sub=$(gcloud eventarc triggers describe "$trigger" --format='value(transport.pubsub.subscription)')
  gcloud pubsub subscriptions update "$sub" --project="$DEPLOY_PROJECT" \
    --dead-letter-topic="projects/$DEPLOY_PROJECT/topics/$DEAD_LETTER_TOPIC" --max-delivery-attempts="$attempts" >/dev/null
  gcloud pubsub subscriptions add-iam-policy-binding "$sub" --project="$DEPLOY_PROJECT" \
    --member="serviceAccount:$agent" --role=roles/pubsub.subscriber >/dev/null
  count=$((count + 1))
done
((count > 0)) || die "no Eventarc triggers named $prefix* in $DEPLOY_PROJECT"
log "dead-letter policy set on $count trigger subscriptions"
