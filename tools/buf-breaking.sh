#!/usr/bin/env bash
# buf breaking (FILE rules) of the working tree's contracts against a git branch.
#
# `buf breaking --against '.git#branch=main'` can't build main here: protovalidate's
# validate.proto is fetched into build/ (no BSR access, not committed), so main's tree
# alone doesn't compile. Instead, build main's proto/ into an image beside the same
# dependency, build the working tree the same way, and compare the two images with the
# FILE rules of buf.yaml (images carry no config, so the rule set is passed here).
set -euo pipefail
branch="${1:-main}"
root="$(git rev-parse --show-toplevel)"
cd "$root"
buf="$root/.venv/bin/buf"

if ! git rev-parse --verify --quiet "$branch" >/dev/null; then
  echo "buf breaking: no branch '$branch' yet; nothing to compare against"
  exit 0
fi
if ! git ls-tree -d --name-only "$branch" proto/chatmesh | grep -q .; then
  echo "buf breaking: '$branch' has no contracts yet; nothing to compare against"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git archive "$branch" proto buf.yaml | tar -x -C "$tmp"
mkdir -p "$tmp/build"
cp -r build/protodeps "$tmp/build/"
(cd "$tmp" && "$buf" build -o "$tmp/against.binpb")
"$buf" build -o "$tmp/current.binpb"
"$buf" breaking "$tmp/current.binpb" --against "$tmp/against.binpb" \
  --config '{"version": "v2", "breaking": {"use": ["FILE"]}}'
echo "buf breaking: no breaking change against '$branch'"
