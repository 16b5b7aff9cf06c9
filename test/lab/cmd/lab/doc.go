// Command lab brings kbootstrap's test lab up and down from a shell (the Makefile's lab targets
// call it): a handful of Debian "VMs" made of Linux namespaces, reachable over SSH from the host.
//
//	lab up [--id lab] [--dir .lab] [--cp 3] [--workers 0] [--lb 0] [--nodes N] [--node NAME[:ROLE[:NETS]]]...
//	lab down [--id ID] [--dir DIR]
//	lab status
//	lab stop|start|partition|heal NODE
//	lab exec NODE -- CMD [ARG...]
//	lab ssh [--user root] NODE [-- CMD...]
//
// --dir defaults to $KBOOTSTRAP_LAB_DIR, else .lab at the repository root. --cp, --workers and
// --lb default to $LAB_CP (3), $LAB_WORKERS (0) and $LAB_LB (0); --nodes N instead makes N
// workers node1..nodeN (a benchmark's fleet). --node (repeatable) gives the nodes one by one, e.g.
// --node bastion:worker:0,1 --node hidden:worker:1 for a node on both bridges and one only on the
// second. Every step prints its duration on stderr.
package main
