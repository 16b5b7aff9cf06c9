// Package nodetimer is kbootstrap's one way of running itself on the nodes
// on a schedule (certificate renewal, etcd snapshots, backups): this very
// kbootstrap, checked to be a Linux executable for the node's architecture,
// installed as /usr/local/bin/kbootstrap when its checksum differs, and a
// systemd timer with its oneshot service, or a cron entry in /etc/cron.d on
// a node without systemd. Each file is written only when it differs, so a
// second install changes nothing and says so; a cron entry's random delay is
// drawn once and kept.
package nodetimer
