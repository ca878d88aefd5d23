# Private apt access to Debian's suites, sourced by the fetch scripts.
#
# The system's apt configuration is never touched: sources, lists and
# downloads live under one private directory in the cache.  The mirror URIs
# are the machine's own (/etc/apt), so a host behind its own mirror keeps it.
# Debian's mirrors are partial and its suites move on, so callers ask for the
# versions that are *listed* and then try them newest first: a listed file
# can still answer 404.
#
# Knobs: P2PLAB_DEBIAN_SUITES (suites searched), P2PLAB_APT_MAX_AGE (minutes
# before the private lists are refreshed; 0 forces a refresh).

dapt_suites=${P2PLAB_DEBIAN_SUITES:-"bookworm bookworm-security trixie trixie-security trixie-backports forky sid experimental"}

dapt_log() { echo "$dapt_who: $*" >&2; }

# dapt_init WHO: set DAPT_OPTS for the private apt tree in the cache (one for
# every fetch script); refresh its lists when they are missing or older than
# P2PLAB_APT_MAX_AGE minutes.
dapt_init() {
    local dir=${P2PLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/p2plab}/apt
    local mirror security keyring=/usr/share/keyrings/debian-archive-keyring.gpg s uri
    dapt_who=$1
    mkdir -p "$dir/lists/partial" "$dir/archives/partial"
    # Two fetch scripts may run at once (make -j): one refresh at a time.
    exec 8>"$dir/lock"
    flock 8
    local all
    all=$( (cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true) \
        | grep -E '^(URIs:|deb )' | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' \
        | awk '{print $1}')
    mirror=$(grep -v security <<<"$all" | head -1 || true)
    security=$(grep security <<<"$all" | head -1 || true)
    : "${mirror:=http://deb.debian.org/debian}"
    : "${security:=${mirror%/debian}/debian-security}"
    : > "$dir/sources.list.new"
    for s in $dapt_suites; do
        case $s in *-security) uri=$security ;; *) uri=$mirror ;; esac
        printf 'deb [signed-by=%s] %s %s main\ndeb-src [signed-by=%s] %s %s main\n' \
            "$keyring" "$uri" "$s" "$keyring" "$uri" "$s" >> "$dir/sources.list.new"
    done
    local changed=1
    cmp -s "$dir/sources.list.new" "$dir/sources.list" && changed=0
    mv "$dir/sources.list.new" "$dir/sources.list"
    DAPT_OPTS=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
               -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache::Archives=$dir/archives"
               -o Dir::State::Status=/dev/null -o Debug::NoLocking=1 -o APT::Sandbox::User=root
               -o APT::Architecture=amd64 -o Acquire::Languages=none)
    local stamp=$dir/lists/.p2plab-updated max_age=${P2PLAB_APT_MAX_AGE:-720}
    if [ "$changed" = 1 ] || [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +"$max_age" 2>/dev/null)" ] \
        || [ "$max_age" = 0 ]; then
        dapt_log "refreshing private apt lists ($dapt_suites) from $mirror"
        if apt-get "${DAPT_OPTS[@]}" update -q >"$dir/update.log" 2>&1; then
            touch "$stamp"
        else
            dapt_log "apt-get update failed (see $dir/update.log); using the lists already there"
        fi
    fi
    exec 8>&-
}

# dapt_versions bin|src PKG: the versions listed for PKG, newest first.
dapt_versions() {
    local kind=$1 pkg=$2
    if [ "$kind" = src ]; then
        apt-cache "${DAPT_OPTS[@]}" showsrc "$pkg" 2>/dev/null | sed -n "/^Package: $pkg\$/,/^\$/s/^Version: //p"
    else
        apt-cache "${DAPT_OPTS[@]}" show "$pkg" 2>/dev/null | sed -n 's/^Version: //p'
    fi | dapt_sort_desc
}

# dapt_sort_desc: Debian versions on stdin, unique, newest first (dpkg's order:
# epochs and "~rc" pre-releases sort as Debian means them, unlike sort -V).
dapt_sort_desc() {
    local v out=() i j t
    while read -r v; do [ -n "$v" ] && out+=("$v"); done < <(sort -u)
    for ((i = 1; i < ${#out[@]}; i++)); do
        for ((j = i; j > 0; j--)); do
            dpkg --compare-versions "${out[j]}" gt "${out[j-1]}" || break
            t=${out[j]}; out[j]=${out[j-1]}; out[j-1]=$t
        done
    done
    [ ${#out[@]} -eq 0 ] || printf '%s\n' "${out[@]}"
}

# dapt_download bin|src PKG VERSION DEST: fetch one listed version into DEST
# (a .deb, or a source package's .dsc and tarballs).  Fails if the mirror does.
dapt_download() {
    local kind=$1 pkg=$2 ver=$3 dest=$4
    mkdir -p "$dest"
    if [ "$kind" = src ]; then
        (cd "$dest" && apt-get "${DAPT_OPTS[@]}" source --download-only -q "$pkg=$ver" >"$dest/download.log" 2>&1)
    else
        (cd "$dest" && apt-get "${DAPT_OPTS[@]}" download -q "$pkg=$ver" >"$dest/download.log" 2>&1)
    fi
}
