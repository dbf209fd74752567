#!/usr/bin/env bash
# A fake gcloud for testing deploy/scripts without Google Cloud. It records
# every invocation in $FAKE_GCLOUD_LOG (arguments separated by \x1f,
# invocations terminated by \x1e) and keeps the resources that exist in
# $FAKE_GCLOUD_STATE, one "GROUP|PROJECT|LOCATION|NAME" line each (PROJECT
# and LOCATION are "-" when the command names none):
#   (secrets versions add records only)
#   describe       exits 1 (NOT_FOUND) unless the resource exists, else
#                  prints what the requested --format=value(...) asks for
#   create/deploy  add the resource; delete removes it; undelete, update,
#   /commit        commit and IAM bindings leave the state as it is
#   list           prints the existing resources of the group, filtered by
#                  --location, a --filter=name~/COLLECTION/PREFIX prefix and
#                  a parent.id:N term of the filter (PROJECT = folders/N)
# `projects describe` always answers project number 123456789012. `projects
# list` gives each project the number in its LOCATION field, 123456789012
# when that is "-"; its PROJECT field is the parent (folders/N) or "-".
# Folders are "resource-manager folders|folders/PARENT|-|ID" lines, so
# `resource-manager folders list --folder=PARENT` lists the sub-folders.
# --organization=O and --folder=F stand in for PROJECT as organizations/O
# and folders/F.
# FAKE_GCLOUD_FAIL holds failure rules, one "SUBSTRING=COUNT" a line: an
# invocation whose space-joined arguments contain SUBSTRING fails (exit 1,
# after it is recorded) COUNT times, every time when COUNT is "always".
# FAKE_GCLOUD_ACCOUNT is what `config get-value account` prints.
set -euo pipefail

{
  first=1
  for a in "$@"; do
    if ((first)); then first=0; else printf '\x1f'; fi
    printf '%s' "$a"
  done
  printf '\x1e'
} >>"$FAKE_GCLOUD_LOG"
touch "$FAKE_GCLOUD_STATE"

if [[ -n "${FAKE_GCLOUD_FAIL:-}" ]]; then
  joined="$*"
  rule_index=0
  while IFS= read -r rule; do
    [[ -n "$rule" ]] || continue
    rule_index=$((rule_index + 1))
    substring=${rule%=*}
    count=${rule##*=}
    [[ "$joined" == *"$substring"* ]] || continue
    counter="$FAKE_GCLOUD_STATE.fail$rule_index"
    failed=$(cat "$counter" 2>/dev/null || echo 0)
    if [[ "$count" == always ]] || ((failed < count)); then
      echo $((failed + 1)) >"$counter"
      echo "ERROR: (gcloud) fake failure $((failed + 1)) for rule '$rule'" >&2
      exit 1
    fi
  done <<<"$FAKE_GCLOUD_FAIL"
fi

if [[ "$1" == config && "${2:-}" == get-value ]]; then
  echo "${FAKE_GCLOUD_ACCOUNT:-deployer@example.com}"
  exit 0
fi

positional=()
project=-
location=-
format=
filter=
for a in "$@"; do
  case "$a" in
    --project=*) project=${a#--project=} ;;
    --location=*) location=${a#--location=} ;;
    --region=*) location=${a#--region=} ;;
    --organization=*) project=organizations/${a#--organization=} ;;
    --folder=*) project=folders/${a#--folder=} ;;
    --format=*) format=${a#--format=} ;;
    --filter=*) filter=${a#--filter=} ;;
    -*) ;;
    *) positional+=("$a") ;;
  esac
done

verb_index=-1
for i in "${!positional[@]}"; do
  case "${positional[$i]}" in
    describe | create | delete | list | update | undelete | deploy | enable | commit | validate-message | add-iam-policy-binding | add)
      verb_index=$i
      break
      ;;
  esac
done
((verb_index >= 0)) || {
  echo "fake gcloud: no verb in: $*" >&2
  exit 2
}
verb=${positional[$verb_index]}
group="${positional[*]:0:verb_index}"
name=${positional[verb_index + 1]:-}
if [[ "$name" == pubsub || "$name" == http ]]; then # scheduler jobs create pubsub NAME
  name=${positional[verb_index + 2]:-}
fi
if [[ "$name" == projects/*/locations/*/* ]]; then # a full resource name
  project=${name#projects/}
  project=${project%%/*}
  location=${name#projects/*/locations/}
  location=${location%%/*}
fi
name=${name##*/}

if [[ "$group" == projects && "$verb" == describe ]]; then
  echo 123456789012
  exit 0
fi

key="$group|$project|$location|$name"
exists() { grep -qxF "$key" "$FAKE_GCLOUD_STATE"; }
# A "KEY|deleted" line is a deleted resource (a custom role): describe
# finds it and says deleted=True; undelete brings it back.
deleted=
if grep -qxF "$key|deleted" "$FAKE_GCLOUD_STATE"; then deleted=True; fi

case "$verb" in
  describe)
    exists || [[ -n "$deleted" ]] || {
      echo "ERROR: (gcloud.$group.describe) NOT_FOUND: $name" >&2
      exit 1
    }
    case "$format" in
      'value(transport.pubsub.subscription)') echo "projects/fake/subscriptions/eventarc-$location-$name-sub-000" ;;
      'value(definition)') echo "syntax = \"proto3\"; message Outdated {}" ;;
      'value(deleted)') echo "$deleted" ;;
      'value(schemaSettings.schema)') echo "projects/fake/schemas/iapguard-outcome-v1" ;;
      'value(writerIdentity)') echo "serviceAccount:service-org-42@gcp-sa-logging.iam.gserviceaccount.com" ;;
      '') echo "name: $name" ;;
      *) echo "$name" ;;
    esac
    ;;
  create | deploy)
    exists || echo "$key" >>"$FAKE_GCLOUD_STATE"
    ;;
  undelete)
    awk -v k="$key" '$0 == k "|deleted" { print k; next } { print }' "$FAKE_GCLOUD_STATE" >"$FAKE_GCLOUD_STATE.tmp"
    mv "$FAKE_GCLOUD_STATE.tmp" "$FAKE_GCLOUD_STATE"
    ;;
  delete)
    grep -vxF "$key" "$FAKE_GCLOUD_STATE" >"$FAKE_GCLOUD_STATE.tmp" || true
    mv "$FAKE_GCLOUD_STATE.tmp" "$FAKE_GCLOUD_STATE"
    ;;
  list)
    prefix=
    if [[ "$filter" == name~* ]]; then
      prefix=${filter##*/}
    fi
    if [[ " $filter " =~ [[:space:]]parent\.id:([0-9]+)[[:space:]] ]]; then
      project=folders/${BASH_REMATCH[1]}
    fi
    while IFS='|' read -r g p l n; do
      [[ "$g" == "$group" && ("$project" == - || "$project" == "$p") ]] || continue
      [[ "$location" == - || "$location" == "$l" ]] || continue
      [[ "$n" == "$prefix"* ]] || continue
      if [[ "$format" == 'value(name)' ]]; then
        echo "projects/$p/locations/$l/${group##* }/$n"
      elif [[ "$format" == 'value(projectId,projectNumber)' ]]; then
        if [[ "$l" == - ]]; then l=123456789012; fi
        printf '%s\t%s\n' "$n" "$l"
      else
        echo "$n"
      fi
    done <"$FAKE_GCLOUD_STATE"
    ;;
esac
