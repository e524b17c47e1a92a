# Sourced by the image scripts: the container storage podman and buildah use, kept in
# keykeeper's per-machine cache (not the machine's /var/lib/containers), and rlimits
# that fit a sandbox whose hard limits are lower than the engines' defaults.
cache=${KEYKEEPER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keykeeper}
storage=(--root "$cache/containers/storage" --runroot "$cache/containers/run" --storage-driver overlay)
ulimits=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
