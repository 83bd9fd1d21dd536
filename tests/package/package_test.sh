#!/usr/bin/env bash
# package_test.sh BUILD_DIR VERSION MAN_PAGES(ON|OFF): ctest `package_deb`, label "package".
#
# Builds the Debian package from BUILD_DIR with cpack (into a scratch directory),
# checks its control data and file list, unpacks it into a scratch root and mounts
# with it: in a private mount namespace the package's /sbin and /usr/sbin are laid
# over the host's with overlayfs, so `mount -t fuse.migratefs` goes through the real
# mount(8) -> /sbin/mount.fuse.migratefs -> /usr/sbin/migratefs chain of the package
# without installing anything on the host. Writes through the mount, reads back,
# compares bytes, unmounts; then a dead mount is cleaned by migratefs-clean-mount,
# the default broker.toml starts a broker, and the units pass systemd-analyze verify
# (skipped when systemd-analyze is missing). Needs root and /dev/fuse.
set -euo pipefail

BUILD=$(cd "${1:?usage: package_test.sh BUILD_DIR VERSION MAN_PAGES}" && pwd)
VERSION=${2:?version}
MAN=${3:-OFF}
ARCH=$(dpkg --print-architecture)
FAILS=0

say() { printf '%s\n' "package_test: $*"; }
fail() {
  say "FAIL: $*"
  FAILS=$((FAILS + 1))
}
die() {
  say "FAIL: $*"
  exit 1
}
ok() { say "ok: $*"; }

[ "$(id -u)" = 0 ] || die "needs root (FUSE mounts, mount namespaces)"
[ -c /dev/fuse ] || die "needs /dev/fuse"
for tool in cpack dpkg-deb unshare findmnt cmp; do
  command -v "$tool" >/dev/null || die "needs $tool"
done

WORK=$(mktemp -d /tmp/migratefs-package-test.XXXXXX)
cleanup() {
  local m
  for m in "$WORK/mnt" "$WORK/mnt2"; do
    if findmnt -n --mountpoint "$m" >/dev/null 2>&1; then umount -l "$m" 2>/dev/null || true; fi
  done
  if [ "${KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- 1. build the package ------------------------------------------------------------
start=$(date +%s)
if ! (cd "$BUILD" && cpack -G DEB -B "$WORK/out") >"$WORK/cpack.log" 2>&1; then
  cat "$WORK/cpack.log"
  die "cpack -G DEB failed (is the build complete? cmake --build $BUILD)"
fi
DEB="$WORK/out/migratefs_${VERSION}_${ARCH}.deb"
[ -f "$DEB" ] || { ls -l "$WORK/out"; die "cpack did not write $(basename "$DEB")"; }
ok "built $(basename "$DEB") ($(du -h "$DEB" | cut -f1), $(($(date +%s) - start)) s)"

# --- 2. control data ------------------------------------------------------------------
field() { dpkg-deb -f "$DEB" "$1"; }
[ "$(field Package)" = migratefs ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$VERSION" ] || fail "Version: $(field Version), want $VERSION"
[ "$(field Architecture)" = "$ARCH" ] || fail "Architecture: $(field Architecture)"
depends=$(field Depends)
for dep in fuse3 libfuse3-3; do
  grep -Eq "(^|, )$dep( |,|$)" <<<"$depends" || fail "Depends lacks $dep: $depends"
done
mkdir -p "$WORK/control"
dpkg-deb -e "$DEB" "$WORK/control"
grep -qx /etc/migratefs/broker.toml "$WORK/control/conffiles" || fail "broker.toml is not a conffile"
for script in postinst postrm; do
  [ -x "$WORK/control/$script" ] || { fail "no executable $script"; continue; }
  sh -n "$WORK/control/$script" || fail "$script: syntax"
done
ok "control: Depends: $depends"

# --- 3. file list ---------------------------------------------------------------------
dpkg-deb -c "$DEB" | awk '{ print $1, $6 }' >"$WORK/contents"
want_exec=(
  ./usr/sbin/migratefs ./usr/sbin/migratefs-broker
  ./usr/bin/migratectl ./usr/bin/migratefs-scheduler ./usr/bin/migratefs-sim
  ./sbin/mount.fuse.migratefs ./usr/libexec/migratefs/migratefs-clean-mount
)
want_file=(
  ./lib/systemd/system/migratefs@.service ./lib/systemd/system/migratefs-broker.service
  ./etc/migratefs/broker.toml ./usr/share/doc/migratefs/packaging.md
  ./usr/share/doc/migratefs/broker/README.md
)
if [ "$MAN" = ON ]; then
  want_file+=(./usr/share/man/man8/migratefs.8.gz ./usr/share/man/man8/migratefs-broker.8.gz
    ./usr/share/man/man8/mount.fuse.migratefs.8.gz ./usr/share/man/man1/migratectl.1.gz
    ./usr/share/man/man1/migratefs-scheduler.1.gz ./usr/share/man/man1/migratefs-sim.1.gz)
else
  say "note: built without help2man, no man pages expected"
fi
for f in "${want_exec[@]}"; do
  grep -q " $f\$" "$WORK/contents" || { fail "package lacks $f"; continue; }
  grep -Eq "^-rwxr-xr-x $f\$" "$WORK/contents" || fail "$f is not mode 0755"
done
for f in "${want_file[@]}"; do
  grep -q " $f\$" "$WORK/contents" || fail "package lacks $f"
done
if grep -E ' \./usr/local/|/_CPack_Packages/' "$WORK/contents"; then fail "stray paths in the package"; fi
ok "file list: $(grep -vc '/$' "$WORK/contents") files"

# --- 4. unpack; every program runs from the package -------------------------------------
ROOT="$WORK/root"
dpkg-deb -x "$DEB" "$ROOT"
for f in "${want_exec[@]}"; do
  [ -f "$ROOT/$f" ] || continue
  if ! "$ROOT/$f" --help >"$WORK/help.out" 2>&1; then
    cat "$WORK/help.out"
    fail "$f --help exits $?"
  elif ! grep -qi usage "$WORK/help.out"; then
    fail "$f --help prints no usage"
  fi
done
"$ROOT/usr/sbin/migratefs" --version | grep -q "$VERSION" || fail "migratefs --version is not $VERSION"
if grep -rl -- "$BUILD" "$ROOT/lib" "$ROOT/sbin" "$ROOT/etc" "$ROOT/usr/libexec" 2>/dev/null; then
  fail "files above name the build directory"
fi
grep -q '^ExecStart=/usr/sbin/migratefs-broker ' "$ROOT/lib/systemd/system/migratefs-broker.service" ||
  fail "migratefs-broker.service does not start /usr/sbin/migratefs-broker"
grep -q '^ExecStart=/usr/sbin/migratefs ' "$ROOT/lib/systemd/system/migratefs@.service" ||
  fail "migratefs@.service does not start /usr/sbin/migratefs"
grep -q '^KillMode=process$' "$ROOT/lib/systemd/system/migratefs@.service" || fail "migratefs@.service: KillMode"
ok "programs run from the unpacked package"

# --- 5. mount with it: mount(8) -> mount helper -> daemon, all from the package ---------
mkdir -p "$WORK/src" "$WORK/mnt" "$WORK/mnt2"
head -c 1048576 /dev/urandom >"$WORK/src/before.img"
cat >"$WORK/inside.sh" <<'INSIDE'
set -euo pipefail
ROOT=$1 WORK=$2
err() { echo "package_test: FAIL: $*"; exit 1; }
# The package's files over the host's, in this mount namespace only.
if [ -L /sbin ]; then  # merged /usr: /sbin is /usr/sbin
  mount -t overlay overlay -o "lowerdir=$ROOT/sbin:$ROOT/usr/sbin:/usr/sbin" /usr/sbin
else
  mount -t overlay overlay -o "lowerdir=$ROOT/sbin:/sbin" /sbin
  mount -t overlay overlay -o "lowerdir=$ROOT/usr/sbin:/usr/sbin" /usr/sbin
fi
cmp -s /usr/sbin/migratefs "$ROOT/usr/sbin/migratefs" || err "overlay does not show the package's migratefs"
[ -x /sbin/mount.fuse.migratefs ] || err "no /sbin/mount.fuse.migratefs in the overlay"

# A mount that must fail: the helper passes the daemon's refusal on, nothing is mounted.
# -n everywhere: nothing is written to the host's /run/mount/utab.
if mount -n -t fuse.migratefs "$WORK/src" "$WORK/mnt" -o no_such_option 2>"$WORK/bad.err"; then
  err "mount with an unknown option succeeded"
fi
findmnt -n --mountpoint "$WORK/mnt" >/dev/null && err "failed mount left a mount behind"
grep -q no_such_option "$WORK/bad.err" || err "the refusal does not name the option: $(cat "$WORK/bad.err")"
# mount's -f (fake) must not mount (nor be taken as the daemon's -f = foreground,
# which would never return).
timeout 10 /sbin/mount.fuse.migratefs "$WORK/src" "$WORK/mnt" -f -o "control=$WORK/control.sock" ||
  err "mount.fuse.migratefs -f failed"
findmnt -n --mountpoint "$WORK/mnt" >/dev/null && err "mount.fuse.migratefs -f mounted"
echo "package_test: ok: helper refuses bad options, honours -f"

# The real one, as an fstab line would: with fstab-only options.
mount -n -t fuse.migratefs "$WORK/src" "$WORK/mnt" -o "control=$WORK/control.sock,nofail,_netdev,defaults" ||
  err "mount -t fuse.migratefs failed"
[ "$(findmnt -n -o FSTYPE --mountpoint "$WORK/mnt")" = fuse.migratefs ] || err "not a fuse.migratefs mount"
cmp "$WORK/src/before.img" "$WORK/mnt/before.img" || err "read through the mount differs"
head -c 3145728 /dev/urandom >"$WORK/data"
dd if="$WORK/data" of="$WORK/mnt/written.img" bs=64k conv=fsync status=none || err "write through the mount"
cmp "$WORK/data" "$WORK/mnt/written.img" || err "read-back through the mount differs"
cmp "$WORK/data" "$WORK/src/written.img" || err "SRC holds other bytes than were written"
"$ROOT/usr/bin/migratectl" --socket "$WORK/control.sock" list >"$WORK/list.out" 2>&1 ||
  err "migratectl list against the packaged daemon: $(cat "$WORK/list.out")"
umount -n "$WORK/mnt" || err "umount"
for _ in $(seq 50); do findmnt -n --mountpoint "$WORK/mnt" >/dev/null || break; sleep 0.1; done
findmnt -n --mountpoint "$WORK/mnt" >/dev/null && err "still mounted after umount"
echo "package_test: ok: mount -t fuse.migratefs, 3 MiB written and read back identical, migratectl list, umount"

# Restart=on-failure's precondition: the dead mount a crashed daemon leaves is detached
# by migratefs-clean-mount; a live one is refused. The crash: SIGKILL to the
# supervisor (the parent of the worker named by pidfile=), or to the daemon itself
# when it runs as one process.
clean=$ROOT/usr/libexec/migratefs/migratefs-clean-mount
"$clean" "$WORK/mnt2" || err "clean-mount on an unmounted directory"
if ! /sbin/mount.fuse.migratefs "$WORK/src" "$WORK/mnt2" -o "pidfile=$WORK/worker.pid" 2>"$WORK/pid.err"; then
  echo "package_test: skip: clean-mount check, the daemon takes no pidfile= ($(cat "$WORK/pid.err"))"
  exit 0
fi
if "$clean" "$WORK/mnt2" 2>/dev/null; then err "clean-mount accepted a live mount"; fi
for _ in $(seq 50); do [ -s "$WORK/worker.pid" ] && break; sleep 0.1; done
worker=$(cat "$WORK/worker.pid")
victim=$worker
sup=$(ps -o ppid= -p "$worker" | tr -d ' ')
[ "$(ps -o comm= -p "$sup" 2>/dev/null)" = migratefs ] && victim=$sup
kill -9 "$victim"
for _ in $(seq 100); do kill -0 "$worker" 2>/dev/null || kill -0 "$victim" 2>/dev/null || break; sleep 0.1; done
kill -0 "$worker" 2>/dev/null && err "worker $worker survived SIGKILL of its supervisor $victim"
if stat "$WORK/mnt2" >/dev/null 2>&1; then err "the killed daemon's mount still answers"; fi
"$clean" "$WORK/mnt2" >/dev/null || err "clean-mount did not detach the dead mount"
findmnt -n --mountpoint "$WORK/mnt2" >/dev/null && err "dead mount still there"
/sbin/mount.fuse.migratefs "$WORK/src" "$WORK/mnt2" || err "mount after cleaning"
cmp "$WORK/data" "$WORK/mnt2/written.img" || err "remounted copy differs"
umount -n "$WORK/mnt2"
echo "package_test: ok: clean-mount refuses a live mount, detaches the dead one of a SIGKILLed daemon; mounting again works"
INSIDE
if unshare --mount --propagation private bash "$WORK/inside.sh" "$ROOT" "$WORK"; then
  ok "mounted with the package"
else
  fail "mounting with the package"
fi

# --- 6. the default broker.toml starts a broker -----------------------------------------
sed -e "s|^control_socket = .*|control_socket = \"$WORK/control.sock\"|" \
  -e "s|^socket = .*|socket = \"$WORK/broker.sock\"|" "$ROOT/etc/migratefs/broker.toml" >"$WORK/broker.toml"
grep -q "^socket = \"$WORK/broker.sock\"" "$WORK/broker.toml" || fail "broker.toml has no socket = line to point elsewhere"
set +e
timeout --preserve-status -s TERM 2 "$ROOT/usr/sbin/migratefs-broker" --config "$WORK/broker.toml" >"$WORK/broker.log" 2>&1
rc=$?
set -e
if [ "$rc" = 0 ] && grep -q "up: control" "$WORK/broker.log"; then
  ok "the default broker.toml loads; the broker started and stopped on SIGTERM"
else
  cat "$WORK/broker.log"
  fail "migratefs-broker with the default broker.toml exited $rc"
fi

# --- 7. systemd-analyze verify -------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  # verify checks that ExecStart= binaries exist, so the unit paths are pointed at the
  # unpacked root; an instance name stands for the template.
  units="$WORK/units"
  mkdir -p "$units"
  for u in "migratefs@.service" migratefs-broker.service; do
    sed -e "s|=\(-\?\)/usr/|=\1$ROOT/usr/|g" -e "s|^\(Exec[A-Za-z]*=\)/usr/|\1$ROOT/usr/|" \
      "$ROOT/lib/systemd/system/$u" >"$units/$u"
  done
  cp "$units/migratefs@.service" "$units/migratefs@var-lib-images.service"
  if SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \
    "$units/migratefs@var-lib-images.service" "$units/migratefs-broker.service" >"$WORK/verify.log" 2>&1 &&
    ! grep -v -e 'Failed to prepare filename' -e '^$' "$WORK/verify.log" | grep -q .; then
    ok "systemd-analyze verify: both units clean"
  else
    cat "$WORK/verify.log"
    fail "systemd-analyze verify"
  fi
else
  say "skip: systemd-analyze not installed, units not verified"
fi

if [ "$FAILS" -gt 0 ]; then
  say "$FAILS check(s) failed"
  exit 1
fi
say "PASS ($(($(date +%s) - start)) s)"
