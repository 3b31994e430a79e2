#!/usr/bin/env bash
# roost's main job, offline, on a fresh Debian 12 machine: build a small image
# from local files and run a container from it, as an unprivileged user.
#   usage: sudo bash demo.sh
# It installs busybox-static, fuse3 and uidmap from Debian, makes /dev/fuse
# usable by users (Debian's default, mode 0666), builds roost with the Go
# toolchain at /usr/local/go (or on PATH), then runs the demo as the user who
# called sudo (or as user roost-demo, created when run as plain root).
set -euo pipefail
cd "$(dirname "$0")"
export PATH=$PATH:/usr/local/go/bin

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run it as root (sudo bash demo.sh): it installs packages and makes /dev/fuse usable" >&2
  exit 1
fi
missing=""
for p in busybox-static fuse3 uidmap; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
chmod 0666 /dev/fuse
[ -e /dev/net/tun ] && chmod 0666 /dev/net/tun

user=${SUDO_USER:-}
if [ -z "$user" ] || [ "$user" = root ]; then
  user=roost-demo
  id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
fi
work=$(mktemp -d /tmp/roost-demo.XXXXXX)
CGO_ENABLED=0 go build -tags urfave_cli_no_docs -o "$work/roost" .
chmod 0755 "$work"
chown -R "$user" "$work"

runuser -u "$user" -- env -C "$work" bash -euo pipefail -c '
R=./roost
export ROOST_ROOT=$PWD/store   # a store of its own, removed at the end
echo "+ a root filesystem from local files: busybox and a web page"
mkdir -p rootfs/bin rootfs/etc rootfs/srv
cp /bin/busybox rootfs/bin/
for a in sh echo cat ls id hostname wc httpd; do ln -sf busybox rootfs/bin/$a; done
echo "root:x:0:0:root:/root:/bin/sh" > rootfs/etc/passwd
echo "root:x:0:" > rootfs/etc/group
echo "<h1>hello from roost</h1>" > rootfs/srv/index.html
echo "+ roost import rootfs demo:1"
$R import -c "CMD [\"sh\"]" -c "WORKDIR /srv" rootfs demo:1
$R images
echo "+ roost run --rm demo:1 sh -c ..."
$R run --rm demo:1 sh -c "echo hello from a container: uid \$(id -u), host \$(hostname), \$(ls /srv | wc -l) file in \$PWD; cat index.html"
echo "+ roost build -t web:1 site   (a Dockerfile FROM demo:1 with a COPY and a RUN)"
mkdir -p site
echo "<h1>hello from a roost build</h1>" > site/index.html
printf "FROM demo:1\nCOPY index.html /srv/\nRUN echo built by \$(id -u) > /srv/built.txt\nEXPOSE 8080\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/srv\"]\n" > site/Dockerfile
$R build -t web:1 site
port=$(/bin/busybox awk "BEGIN{srand(); print 20000 + int(rand()*20000)}")
echo "+ roost run -d --name web -p $port:8080 web:1 ; roost ps"
$R run -d --name web -p $port:8080 web:1 >/dev/null
$R ps
sleep 0.5
echo "+ wget http://127.0.0.1:$port/ (through roost'"'"'s port proxy)"
/bin/busybox wget -qO- "http://127.0.0.1:$port/"
echo "+ roost rm -f web"
$R rm -f web
'
rm -rf "$work"
echo "demo done"
